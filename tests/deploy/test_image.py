"""deploy/Dockerfile, read with Docker's own parser, and the wheel its build stage makes.

Without an engine the image cannot be built here; what can be checked is checked: the
instructions (stages, user, HEALTHCHECK, ENTRYPOINT), that every file the build copies is in
the repository and not excluded from the build context, and - by building the bem wheel
offline from exactly those files, as the build stage does - that the wheel carries every
file the package reads and the `bem` command.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import dockerfile
import pytest

from bem.cli import build_parser
from bem.clusters import SERVE_TARGETS
from tests.deploy.files import DEPLOY, DESIGN_PORTS, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
IGNORE = DEPLOY / "Dockerfile.dockerignore"  # BuildKit: <Dockerfile>.dockerignore


@pytest.fixture(scope="module")
def stages() -> list[list[dockerfile.Command]]:
    """The instructions of each build stage, ARGs before the first FROM dropped."""
    out: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            out.append([])
        if out:
            out[-1].append(command)
    return out


def only(stage: list[dockerfile.Command], cmd: str) -> dockerfile.Command:
    found = [c for c in stage if c.cmd == cmd]
    assert len(found) == 1, f"expected one {cmd}, found {len(found)}"
    return found[0]


def test_multi_stage_on_slim_python_311(stages: list[list[dockerfile.Command]]) -> None:
    assert len(stages) == 2
    args = {c.value[0].split("=")[0]: c.value[0].split("=")[1]
            for c in dockerfile.parse_file(str(DOCKERFILE)) if c.cmd == "ARG"}
    assert args["PYTHON_VERSION"] == "3.11"
    for stage in stages:
        assert stage[0].value[0] == "python:${PYTHON_VERSION}-slim"
    build, runtime = stages
    assert any(c.cmd == "RUN" and "pip wheel" in c.value[0] for c in build)
    install = only(runtime, "RUN")
    assert "--mount=type=bind,from=build,source=/wheels" in install.flags[0]
    assert "--no-index --find-links=/wheels bem" in install.value[0]


def test_runtime_runs_as_a_non_root_user(stages: list[list[dockerfile.Command]]) -> None:
    user = only(stages[-1], "USER").value[0]
    assert user.split(":")[0] not in ("root", "0")
    uid = user.split(":")[0]
    assert f"--uid {uid}" in only(stages[-1], "RUN").value[0]


def test_healthcheck_is_the_clusters_own_health(stages: list[list[dockerfile.Command]]) -> None:
    check = only(stages[-1], "HEALTHCHECK")
    assert check.json, "exec form: no shell needed in the container"
    kind, *argv = check.value
    assert kind == "CMD" and argv[0] == "bem"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "health" and args.url is None  # the ports of $NODE_ROLE
    flags = dict(f.lstrip("-").split("=") for f in check.flags)
    assert args.timeout < float(flags["timeout"].rstrip("s"))


def test_entrypoint_serves_the_cluster_by_argument_or_node_role(
        stages: list[list[dockerfile.Command]]) -> None:
    entry = only(stages[-1], "ENTRYPOINT")
    assert entry.json and entry.value == ("bem", "serve")
    assert not [c for c in stages[-1] if c.cmd == "CMD"]  # no argument: $NODE_ROLE decides
    assert build_parser().parse_args(["serve"]).target is None
    env = {}
    for command in (c for c in stages[-1] if c.cmd == "ENV"):  # value: name, value, name...
        env.update(zip(command.value[::2], command.value[1::2], strict=True))
    assert env["NODE_ROLE"] in SERVE_TARGETS
    assert env["DATA_DIR"] == "/data"
    exposed = {int(p) for c in stages[-1] if c.cmd == "EXPOSE" for p in c.value}
    assert exposed == set(DESIGN_PORTS.values())


def test_the_bem_command_is_a_console_script() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["bem"] == "bem.cli:main"


# --- the build context ---------------------------------------------------------------------
def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per line of the ignore file, Docker's syntax (`**`, `*`, `?`, `!`)."""
    rules = []
    for raw in IGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/?|\*|\?|\[[^]]*\])", glob):
            if token in ("**", "**/"):
                regex += "(.*/)?" if token == "**/" else ".*"
            elif token == "*":
                regex += "[^/]*"
            elif token == "?":
                regex += "[^/]"
            elif token.startswith("["):
                regex += token
            else:
                regex += re.escape(token)
        rules.append((negated, re.compile(regex + "$")))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Last matching rule wins; a rule matching a parent directory covers its contents."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for negated, regex in rules:
        if any(regex.match(p) for p in prefixes):
            result = not negated
    return result


def context_files() -> list[str]:
    """Every file the build stage copies, relative to the repository root."""
    files = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "COPY" and not any(f.startswith("--from") for f in command.flags):
            for source in command.value[:-1]:
                path = REPO / source
                assert path.exists(), f"COPY {source}: not in the repository"
                found = [path] if path.is_file() else list(path.rglob("*"))
                files += [p.relative_to(REPO).as_posix() for p in found if p.is_file()]
    return files


def test_everything_the_build_copies_is_in_the_context() -> None:
    rules = ignore_patterns()
    copied = [f for f in context_files()
              if "__pycache__" not in f and ".egg-info" not in f]
    assert "pyproject.toml" in copied and "src/bem/cli.py" in copied
    assert [f for f in copied if excluded(f, rules)] == []


def test_the_context_leaves_out_what_the_image_does_not_need() -> None:
    rules = ignore_patterns()
    for path in (".git/config", ".venv/bin/python", "tests/support.py", "deploy/Dockerfile",
                 "src/bem/__pycache__/cli.cpython-311.pyc", "benchmarks/hop.py"):
        assert excluded(path, rules), path


def test_the_wheel_carries_every_package_file(tmp_path: Path) -> None:
    """Build the wheel from only what the Dockerfile copies (offline, no build isolation)."""
    source = tmp_path / "context"
    for rel in context_files():
        if "__pycache__" in rel or ".egg-info" in rel:
            continue
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes((REPO / rel).read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    [wheel] = (tmp_path / "wheels").glob("bem-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith("entry_points.txt"))
    package = source / "src"
    wanted = {p.relative_to(package).as_posix() for p in (package / "bem").rglob("*")
              if p.is_file()}
    assert wanted - names == set(), "files of the package missing from the image's wheel"
    assert "bem = bem.cli:main" in entry_points
