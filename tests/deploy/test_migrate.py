"""deploy/migrate.sh: the dry run prints the guide's steps in order; a real run's control flow
(including the automatic rollback) is exercised with DOCKER pointing at a recorder that
logs each docker call, serves a real `bem backup` archive and fails where told to."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.files import CLUSTER_SERVICE, DEPLOY, load_yaml, ports_of

SCRIPT = DEPLOY / "migrate.sh"
OPTIMIZED = f"compose -f {DEPLOY}/docker-compose.optimized.yml"
LEGACY = f"compose -f {DEPLOY}/docker-compose.legacy.yml"

# A stand-in for the docker CLI: records its arguments, answers `compose ... backup -o -`
# with a real archive, keeps what `restore -` reads, fails when its arguments match $FAIL_ON.
RECORDER = """#!/usr/bin/env bash
echo "$*" >> "$RECORD/calls"
if [ -n "${FAIL_ON:-}" ] && [[ "$*" =~ $FAIL_ON ]]; then echo "recorder: failing $*" >&2; exit 1; fi
case "$*" in
  *" backup -o -") cat "$RECORD/archive" ;;
  *" restore -") cat > "$RECORD/restored" ;;
esac
"""


def migrate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60, check=False)


def commands(output: str) -> list[str]:
    return [line.strip()[2:] for line in output.splitlines() if line.strip().startswith("$ ")]


def test_dry_run_prints_the_guides_steps_in_order(tmp_path: Path) -> None:
    done = migrate("--dry-run", "--profile", "full", "--scale", "compute-cluster=3",
                   "--backup-dir", str(tmp_path / "backups"), DOCKER="/nonexistent/docker")
    assert done.returncode == 0, done.stderr
    steps = re.findall(r"^step (\d)/6: (.*)$", done.stdout, re.M)
    assert [n for n, _ in steps] == ["1", "2", "3", "4", "5", "6"]
    titles = " | ".join(t for _, t in steps)
    for word in ("preflight", "backup", "stop the legacy", "restore", "start the full",
                 "validate"):
        assert word in titles
    lines = commands(done.stdout)
    order = [
        f"/nonexistent/docker {OPTIMIZED} --profile full build",
        f"/nonexistent/docker {LEGACY} stop dag-alpha",
        f"/nonexistent/docker {LEGACY} run --rm --no-deps -T --entrypoint bem "
        f"callback-engine backup -o - > {tmp_path}/backups/bem-legacy-",
        f"/nonexistent/docker {LEGACY} down",
        f"/nonexistent/docker {OPTIMIZED} --profile full up -d --wait --wait-timeout 300 "
        f"redis-cache",
        f"/nonexistent/docker {OPTIMIZED} run --rm --no-deps -T --entrypoint bem "
        f"compute-cluster restore - <",
        f"/nonexistent/docker {OPTIMIZED} --profile full up -d --wait --wait-timeout 300 "
        f"--scale compute-cluster=3",
    ]
    positions = [next(i for i, line in enumerate(lines) if line.startswith(want))
                 for want in order]
    assert positions == sorted(positions)
    [stop] = [line for line in lines if f"{LEGACY} stop " in line]
    legacy = load_yaml(DEPLOY / "docker-compose.legacy.yml")["services"]
    assert set(stop.split(" stop ")[1].split()) == set(legacy) - {"redis"}  # Redis stays up
    checks = [line for line in lines if " bem health " in line]
    expected = {(name, index, port) for cluster, name in CLUSTER_SERVICE.items()
                for index in range(1, (3 if name == "compute-cluster" else 1) + 1)
                for port in ports_of(cluster)}
    seen = {(m[2], int(m[1]), int(m[3])) for m in
            (re.search(r"--index (\d+) (\S+) bem health http://127.0.0.1:(\d+)$", c)
             for c in checks) if m}
    assert seen == expected and len(checks) == len(expected)
    rollback = done.stdout.split("rollback")[-1]
    assert f"{OPTIMIZED} --profile full down" in rollback
    assert f"{LEGACY} up -d --wait" in rollback
    assert "dry run complete" in done.stdout
    assert not (tmp_path / "backups").exists()


def test_minimal_profile_validates_only_the_backends() -> None:
    done = migrate("--dry-run", "--profile", "minimal")
    assert done.returncode == 0, done.stderr
    ports = {int(p) for p in re.findall(r"bem health http://127.0.0.1:(\d+)", done.stdout)}
    assert ports == set(ports_of("compute")) | set(ports_of("logic"))
    assert "compat check" not in done.stdout  # no gateway: no old client to replay


@pytest.mark.parametrize("args, message", [
    (["--profile", "huge"], "unknown profile huge"),
    (["--scale", "api-gateway=2"], "only compute-cluster=N or logic-cluster=N"),
    (["--scale", "compute-cluster=0"], "only compute-cluster=N"),
    (["--frobnicate"], "unknown argument --frobnicate"),
])
def test_bad_arguments_are_refused(args: list[str], message: str) -> None:
    done = migrate("--dry-run", *args)
    assert done.returncode == 2
    assert message in done.stderr


# --- a run with a recording docker ---------------------------------------------------------
@pytest.fixture
def recorder(tmp_path: Path) -> Path:
    record = tmp_path / "record"
    record.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("kept across the migration\n")
    made = subprocess.run([sys.executable, "-m", "bem", "backup", "--data-dir", str(data),
                           "-o", str(record / "archive")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    docker = tmp_path / "docker"
    docker.write_text(RECORDER)
    docker.chmod(0o755)
    return record


def run_with(recorder: Path, fail_on: str = "") -> tuple[subprocess.CompletedProcess[str],
                                                         list[str]]:
    done = migrate("--profile", "development", "--backup-dir", str(recorder / "backups"),
                   DOCKER=str(recorder.parent / "docker"), RECORD=str(recorder),
                   FAIL_ON=fail_on)
    calls = (recorder / "calls").read_text().splitlines() if (recorder / "calls").exists() \
        else []
    return done, calls


def test_a_successful_migration_pipes_the_backup_into_the_restore(recorder: Path) -> None:
    done, calls = run_with(recorder)
    assert done.returncode == 0, done.stderr
    assert "migrated: profile development is running" in done.stdout
    [backup] = (recorder / "backups").glob("bem-legacy-*.tar.gz")
    assert backup.read_bytes() == (recorder / "archive").read_bytes()
    assert (recorder / "restored").read_bytes() == backup.read_bytes()
    assert not [c for c in calls if c.endswith(" down --remove-orphans")]  # no rollback
    assert len([c for c in calls if " bem health " in c]) == 9
    # the old clients' requests replayed last, from the gateway
    assert calls[-1] == f"{OPTIMIZED} exec -T api-gateway bem compat check"


def test_an_incompatible_layout_rolls_back_to_legacy(recorder: Path) -> None:
    """Healthy is not enough: when the old clients' requests do not all pass, the
    migration is not done."""
    done, calls = run_with(recorder, fail_on="bem compat check")
    assert done.returncode == 1
    assert "step 6/6: validate every port of every replica failed" in done.stderr
    assert "rolled back: the legacy layout is running" in done.stderr
    assert calls[-2:] == [f"{OPTIMIZED} --profile development down --remove-orphans",
                          f"{LEGACY} up -d --wait --wait-timeout 300"]


def test_a_failed_check_rolls_back_to_legacy(recorder: Path) -> None:
    done, calls = run_with(recorder, fail_on="bem health http://127.0.0.1:5002")
    assert done.returncode == 1
    assert "step 6/6: validate every port of every replica failed" in done.stderr
    assert "rolled back: the legacy layout is running" in done.stderr
    failed_at = next(i for i, c in enumerate(calls) if "127.0.0.1:5002" in c)
    assert calls[failed_at + 1:] == [f"{OPTIMIZED} --profile development down --remove-orphans",
                                     f"{LEGACY} up -d --wait --wait-timeout 300"]


def test_a_failed_backup_restarts_the_stopped_legacy_services(recorder: Path) -> None:
    done, calls = run_with(recorder, fail_on="backup -o -")
    assert done.returncode == 1
    assert not [c for c in calls if c.startswith(f"{LEGACY} down")]
    assert calls[-1] == f"{LEGACY} up -d --wait --wait-timeout 300"
    assert list((recorder / "backups").iterdir()) == []  # no half-written archive


def test_a_failed_build_stops_before_any_downtime(recorder: Path) -> None:
    done, calls = run_with(recorder, fail_on=" build$")
    assert done.returncode == 1
    assert "rolling back" not in done.stderr
    assert not [c for c in calls if LEGACY in c]  # the legacy layout was never touched


def test_a_failed_rollback_says_what_to_do(recorder: Path) -> None:
    done, _ = run_with(recorder, fail_on="127.0.0.1:8000|legacy.yml up")
    assert done.returncode == 1
    assert "ROLLBACK FAILED" in done.stderr
    assert "docker-compose.legacy.yml up -d" in done.stderr
