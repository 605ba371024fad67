"""The README stays true: its set-up commands exist and its settings table is complete."""

from __future__ import annotations

import os
import re

from bem.settings import Settings
from tests.support import REPO

README = (REPO / "README.md").read_text()


def test_the_two_setup_commands_exist_and_ci_runs_the_test_one() -> None:
    block = re.search(r"## Set-up: the two commands\n\n```sh\n(.*?)```", README, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["./scripts/up", "./scripts/test"]
    for command in commands:
        assert os.access(REPO / command, os.X_OK), command
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        env = (field.alias or name).upper()
        if name.endswith("_port"):
            assert f"`{env}`" in README or "`<SERVICE>_PORT`" in README
            continue
        assert f"| `{env}` |" in README, f"{env} missing from the README's settings table"


def test_linked_docs_exist() -> None:
    for target in re.findall(r"\]\(((?:docs|benchmarks|deploy)/[^)#]+)\)", README):
        assert (REPO / target).exists(), target


def test_the_benchmark_section_is_the_latest_run() -> None:
    latest = (REPO / "benchmarks" / "results" / "latest.md").read_text().strip()
    assert latest.split("\n", 1)[1].strip() in README, "paste benchmarks/results/latest.md"
