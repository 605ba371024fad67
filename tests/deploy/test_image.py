"""deploy/Dockerfile, read with Docker's own parser, the image's two scripts, and the wheel
its build stage makes.

tests/containers builds and runs the image under a real engine; these checks need none: the
instructions (stages, user, HEALTHCHECK, ENTRYPOINT), the entry point's health URL for each
way of choosing the cluster, that every file the build copies is in the repository and not
excluded from the build context, and - by building the bem wheel offline from exactly
those files, as the build stage does - that the wheel carries every file the package reads
and the `bem` command.
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import subprocess
import sys
import tomllib
import types
import zipfile
from pathlib import Path
from typing import Any

import dockerfile
import pytest

from bem.cli import build_parser
from bem.clusters import SERVE_TARGETS
from tests.deploy.files import DEPLOY, DESIGN_PORTS, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
IGNORE = DEPLOY / "Dockerfile.dockerignore"  # BuildKit: <Dockerfile>.dockerignore
IMAGE = DEPLOY / "image"  # the image's entry point and healthcheck scripts


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


def test_no_syntax_line_and_a_python_image_chosen_by_build_arg(
        stages: list[list[dockerfile.Command]]) -> None:
    # `# syntax=` makes BuildKit fetch its frontend from a registry: offline builds fail
    assert not DOCKERFILE.read_text().lstrip().startswith("# syntax")
    assert "syntax=" not in DOCKERFILE.read_text().split("\n", 1)[0]
    assert len(stages) == 2
    args = {c.value[0].split("=")[0]: c.value[0].split("=", 1)[1]
            for c in dockerfile.parse_file(str(DOCKERFILE))
            if c.cmd == "ARG" and "=" in c.value[0]}
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    for stage in stages:
        assert stage[0].value[0] == "${PYTHON_IMAGE}"
    build, runtime = stages
    assert any(c.cmd == "ARG" and c.value[0] == "WHEELHOUSE=" for c in build)
    wheel = next(c for c in build if c.cmd == "RUN")
    assert "pip wheel --wheel-dir /wheels" in wheel.value[0]
    assert '--no-index --find-links "/context/$WHEELHOUSE"' in wheel.value[0]
    install = next(c for c in runtime if c.cmd == "RUN")
    assert "--mount=type=bind,from=build,source=/wheels" in install.flags[0]
    assert "--no-index --find-links=/wheels bem" in install.value[0]


def test_runtime_runs_as_a_non_root_user(stages: list[list[dockerfile.Command]]) -> None:
    user = only(stages[-1], "USER").value[0]
    assert user.split(":")[0] not in ("root", "0")
    uid = user.split(":")[0]
    assert f"--uid {uid}" in only(stages[-1], "RUN").value[0]


def image_health_timeout() -> float:
    """bem-healthcheck's own request timeout, read from the script."""
    found = re.search(r"^TIMEOUT = ([0-9.]+)", (IMAGE / "bem-healthcheck").read_text(), re.M)
    assert found, "bem-healthcheck sets TIMEOUT"
    return float(found[1])


def test_healthcheck_is_the_served_clusters_own_health(
        stages: list[list[dockerfile.Command]]) -> None:
    check = only(stages[-1], "HEALTHCHECK")
    assert check.json, "exec form: no shell needed in the container"
    assert check.value == ("CMD", "bem-healthcheck")
    flags = dict(f.lstrip("-").split("=") for f in check.flags)
    assert image_health_timeout() < float(flags["timeout"].rstrip("s"))
    assert float(flags["interval"].rstrip("s")) <= 2  # healthy soon after ready
    copy = only(stages[-1], "COPY")
    assert copy.value == ("deploy/image/bem-entrypoint", "deploy/image/bem-healthcheck",
                          "/opt/bem/bin/")
    for script in ("bem-entrypoint", "bem-healthcheck"):
        assert os.access(IMAGE / script, os.X_OK), f"{script} is not executable"
    # the standard library only: the check must not pay for bem's imports
    imports = re.findall(r"^(?:from|import) (\w+)", (IMAGE / "bem-healthcheck").read_text(),
                         re.M)
    assert set(imports) <= {"http", "json", "sys", "urllib"}, imports


def test_entrypoint_serves_the_cluster_by_argument_or_node_role(
        stages: list[list[dockerfile.Command]]) -> None:
    entry = only(stages[-1], "ENTRYPOINT")
    assert entry.json and entry.value == ("bem-entrypoint",)
    assert not [c for c in stages[-1] if c.cmd == "CMD"]  # no argument: $NODE_ROLE decides
    assert build_parser().parse_args(["serve"]).target is None
    env = {}
    for command in (c for c in stages[-1] if c.cmd == "ENV"):  # value: name, value, name...
        env.update(zip(command.value[::2], command.value[1::2], strict=True))
    assert env["NODE_ROLE"] in SERVE_TARGETS
    assert env["DATA_DIR"] == "/data"
    assert env["PATH"].startswith("/opt/bem/bin:")


def test_no_port_is_exposed_by_the_one_image_of_every_cluster(
        stages: list[list[dockerfile.Command]]) -> None:
    assert not [c for c in stages[-1] if c.cmd == "EXPOSE"]  # compose/k8s declare them


def entrypoint_module(monkeypatch: pytest.MonkeyPatch, target: Path) -> Any:
    loader = importlib.machinery.SourceFileLoader("bem_entrypoint",
                                                  str(IMAGE / "bem-entrypoint"))
    module = types.ModuleType(loader.name)
    loader.exec_module(module)
    monkeypatch.setattr(module, "HEALTH_URL_FILE", target)
    return module


@pytest.mark.parametrize("argv, node_role, port", [
    (["logic"], "single", DESIGN_PORTS["functor_types"]),  # the argument wins (defect 5)
    ([], "gateway", DESIGN_PORTS["graphql"]),
    (["compute"], "compute", DESIGN_PORTS["dag_alpha"]),
])
def test_the_entrypoint_tells_the_healthcheck_which_cluster_it_serves(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], node_role: str,
        port: int) -> None:
    monkeypatch.setenv("NODE_ROLE", node_role)
    url_file = tmp_path / "bem-health-url"
    entrypoint_module(monkeypatch, url_file).record_health_url(argv)
    assert url_file.read_text() == f"http://127.0.0.1:{port}\n"


def test_the_entrypoint_leaves_a_bad_cluster_to_bem_serve(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    url_file = tmp_path / "bem-health-url"
    entrypoint_module(monkeypatch, url_file).record_health_url(["nonsense"])
    assert not url_file.exists()  # `bem serve nonsense` says what to choose


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
