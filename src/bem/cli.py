"""`bem` command line: serve a cluster, run a topology, check health, bench, back up."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bem import __version__
from bem.clusters import SERVE_TARGETS, TOPOLOGIES
from bem.settings import Settings, SettingsError, load_settings

EXIT_USAGE = 2

_DESCRIPTION = """\
BEM engineering services, consolidated: each cluster is one asyncio process serving every
member service on its own port.

  bem up                      all nine services on this machine (embedded defaults)
  bem serve compute           one cluster process (the container entry point)
  bem health                  health of a running cluster
  bem compat check            replay the old platform's clients against a deployment
  bem backup -o FILE          archive the Redis data and DATA_DIR; `bem restore FILE`
  bem bench --quick           sprawl vs optimized vs single, side by side (source checkout)

Configuration comes from environment variables (WORKERS, CACHE_SIZE, NUMPY_THREADS,
CONNECTION_POOL_SIZE, CALLBACK_BATCH_SIZE, CONFIG_CACHE_TTL, REDIS_URL, NODE_ROLE, ...);
see the README's settings table.
"""


def _settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        print(f"bem: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def configure_logging(settings: Settings, name: str) -> None:
    from bem.runtime.logs import configure

    configure(settings.log_level, name, settings.log_format, settings.tracing)


def run_loop(coro: object) -> int:
    """Run the main coroutine on uvloop (the faster loop uvicorn also uses)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return int(runner.run(coro))  # type: ignore[arg-type]


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    target = args.target or settings.node_role
    if target not in SERVE_TARGETS:
        print(f"bem serve: unknown cluster or service {target!r}; choose one of: "
              f"{', '.join(SERVE_TARGETS)}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings, target)
    from bem.runtime.pool import limit_blas_threads

    limit_blas_threads(settings.numpy_threads)  # before NumPy is imported in this process

    from bem.clusters import PLACEMENT, members
    from bem.runtime.supervisor import EXIT_STARTUP_FAILURE, StartupError, Supervisor
    from bem.services import spec

    specs = [spec(name) for name in members(target)]
    supervisor = Supervisor(settings, target, specs, PLACEMENT)
    try:
        return run_loop(supervisor.run())
    except StartupError as exc:
        print(f"bem serve {target}: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILURE


def cmd_up(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    configure_logging(settings, "up")
    from bem.clusters.launcher import Launcher

    launcher = Launcher(settings, args.topology, restart=not args.no_restart)
    return run_loop(launcher.run())


def cmd_health(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from bem.clusters.health_cli import check_health

    return run_loop(check_health(settings, args.url, as_json=args.json, timeout=args.timeout))


def cmd_compat(args: argparse.Namespace) -> int:
    from bem.compat.check import compat_check, list_cases

    if args.compat_command == "list":
        return list_cases()
    settings = _settings_or_exit()
    return run_loop(compat_check(settings, args.url, only=args.only, timeout=args.timeout))


def cmd_backup(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from bem.ops.archive import backup
    from bem.ops.redis_data import BackupError

    try:
        summary = backup(args.output, redis_url=args.redis_url or settings.redis_url,
                         data_dir=args.data_dir or settings.data_dir, progress=_progress("backup"))
    except BackupError as exc:
        print(f"bem backup: {exc}", file=sys.stderr)
        return 1
    where = "stdout" if args.output == "-" else args.output
    _progress("backup")(f"wrote {where}: {summary.describe_keys()}, {summary.files} data files")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from bem.ops.archive import restore
    from bem.ops.redis_data import BackupError

    try:
        summary = restore(args.archive, redis_url=args.redis_url or settings.redis_url,
                          data_dir=args.data_dir or settings.data_dir,
                          progress=_progress("restore"))
    except BackupError as exc:
        print(f"bem restore: {exc}", file=sys.stderr)
        return 1
    _progress("restore")(f"done: {summary.describe_keys()}, {summary.files} data files")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run benchmarks/topology.py of the source checkout bem was installed from."""
    import subprocess
    from pathlib import Path

    import bem

    script = Path(bem.__file__).resolve().parents[2] / "benchmarks" / "topology.py"
    if not script.is_file():
        print(f"bem bench: the benchmark lives in the source checkout, not in the installed "
              f"package ({script} does not exist). Clone the repository and install from it: "
              f"pip install -e '.[bench]'", file=sys.stderr)
        return EXIT_USAGE
    forwarded = ["--quick"] if args.quick else []
    if args.results:
        forwarded += ["--results", args.results]
    return subprocess.run([sys.executable, str(script), *forwarded], check=False).returncode


def _progress(command: str) -> Callable[[str], None]:
    """Progress lines go to stderr: stdout may be the archive itself (`-o -`)."""
    def say(line: str) -> None:
        print(f"bem {command}: {line}", file=sys.stderr, flush=True)
    return say


def _add_backup_commands(sub: Any) -> None:
    backup = sub.add_parser(
        "backup", help="write one archive of the Redis data and the data directory",
        description="Write one tar.gz archive holding every Redis key except the replica "
                    "registry (bem:registry:*) - graphs, cached results, the event log with "
                    "its consumer groups - via SCAN + DUMP with each key's TTL, and the files "
                    "of the shared data directory. For a point-in-time copy, stop the "
                    "clusters that write first.")
    backup.add_argument("-o", "--output", metavar="FILE",
                        default=time.strftime("bem-backup-%Y%m%d-%H%M%S.tar.gz"),
                        help="archive to write, '-' for stdout (default: "
                             "bem-backup-<date>-<time>.tar.gz here)")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser(
        "restore", help="put a backup archive back into Redis and the data directory",
        description="Restore every key of a `bem backup` archive (RESTORE ... REPLACE with "
                    "the TTL each key had) and its data files. Keys and files that are not "
                    "in the archive are left alone. Refuses before writing anything if the "
                    "archive is not a bem backup or holds data with nowhere to go.")
    restore.add_argument("archive", metavar="FILE", help="archive to read, '-' for stdin")
    restore.set_defaults(func=cmd_restore)
    for command in (backup, restore):
        command.add_argument("--redis-url", metavar="URL",
                             help="Redis to read or write (default: $REDIS_URL)")
        command.add_argument("--data-dir", metavar="DIR",
                             help="shared data directory (default: $DATA_DIR; unset = none)")


def _add_compat_commands(sub: Any) -> None:
    compat = sub.add_parser(
        "compat", help="the old platform's clients: replay their requests",
        description="The requests the old platform's clients send (agent console, "
                    "orchestrator, ECM WebSocket clients; recorded from their code, each "
                    "naming its file), and what each reads from the answer.")
    commands = compat.add_subparsers(dest="compat_command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check", help="replay every recorded request against a running deployment",
        description="Replay every recorded request of the old clients and check what each "
                    "client reads from the answer. One line per request, then 'N/M "
                    "compatible'; exit 0 only when all are compatible. Without URL, each "
                    "service is reached at its static address (BACKEND_<CLUSTER>_URL or "
                    "BACKEND_HOST, and <SERVICE>_PORT), as the clusters reach each other.")
    check.add_argument("url", nargs="?", metavar="URL",
                       help="scheme://host where every service listens on its own port "
                            "(e.g. http://127.0.0.1 for `bem up`)")
    check.add_argument("--only", metavar="TEXT",
                       help="replay only the requests whose old file or name contains TEXT")
    check.add_argument("--timeout", type=float, default=30.0,
                       help="seconds per request (default 30)")
    commands.add_parser("list", help="list the recorded requests",
                        description="One line per recorded request: its old file, what it "
                                    "sends, what it is.")
    compat.set_defaults(func=cmd_compat)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bem", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"bem {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run one cluster (or one service) in this process",
                           description="Run the member services of a cluster in one process, "
                                       "each on its own port, until SIGTERM/SIGINT.")
    serve.add_argument("target", nargs="?", metavar="CLUSTER",
                       help=f"one of: {', '.join(SERVE_TARGETS)} (default: $NODE_ROLE)")
    serve.set_defaults(func=cmd_serve)

    up = sub.add_parser("up", help="run a whole topology on this machine as child processes",
                        description="Start every process of a topology, wait until every port "
                                    "is healthy, supervise them; Ctrl-C or SIGTERM stops all.")
    up.add_argument("--topology", choices=sorted(TOPOLOGIES), default="single",
                    help="sprawl = 9 processes, optimized = 3, single = 1 (default)")
    up.add_argument("--no-restart", action="store_true",
                    help="do not restart a child process that exits unexpectedly")
    up.set_defaults(func=cmd_up)

    health = sub.add_parser("health", help="show the health of a running cluster",
                            description="GET <URL>/cluster-health/local and summarise it; exit 0 "
                                        "when pass or warn, 1 otherwise (a HEALTHCHECK).")
    health.add_argument("url", nargs="?",
                        help="any port of the cluster (default: this host's $NODE_ROLE)")
    health.add_argument("--json", action="store_true", help="print the raw health document")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    health.set_defaults(func=cmd_health)
    _add_compat_commands(sub)
    _add_backup_commands(sub)

    bench = sub.add_parser(
        "bench", help="benchmark sprawl vs optimized vs single on this machine",
        description="Launch the three topologies on this machine with the same settings and "
                    "one private redis-server, and measure memory, start-up, cross-service "
                    "latency, gateway throughput, pool speed-up, cache levels and the "
                    "in-process vs HTTP hop (benchmarks/topology.py of the source checkout; "
                    "needs redis-server, wrk and the `bench` extra). About 5 minutes; "
                    "--quick under two.")
    bench.add_argument("--quick", action="store_true", help="smoke run, noisy figures")
    bench.add_argument("--results", metavar="DIR",
                       help="where to write the results (default: benchmarks/results)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
