"""`make run`: the whole stack on this machine, no Docker, kept running by supervisord.

Makes sure PostgreSQL and Redis answer (starting private ones if needed, and moving a
volatile default Redis to a private persistent one: see scripts/services.py), applies the
migrations once, then runs PROGRAMS under supervisord in the foreground until Ctrl-C or
SIGTERM, and stops everything it started.

Why supervisor: it is the long-kept process manager for exactly this, so this module only
writes its config (under .data/dev-PORT/) and watches it; honcho, the other candidate,
stops the whole set when one program exits, which is the bug this replaced. A program that
exits is restarted (autorestart). One that dies within `startsecs` of its start is retried
after a back-off that grows by a second a try (supervisor's BACKOFF state), and
`startretries` is large enough that it never gives up; one that ran longer is restarted at
once, so a crash loop never turns faster than once per `startsecs`.

Restarts are visible three ways: supervisord logs `exited: NAME (terminated by SIGKILL;
not expected)`; an event listener (this module with --listen) prints one `dev: restarting
NAME ...` line per restart with that reason and keeps counts in .data/dev-PORT/status.json;
the counts are printed on shutdown. `supervisorctl -c .data/dev-PORT/supervisord.conf
status` shows the programs live.
"""

import argparse
import configparser
import contextlib
import ctypes
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

from supervisor import childutils
from supervisor.xmlrpc import SupervisorTransport

from scripts import cluster, services

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
GROUP = "stack"
LISTENER = "dev-events"
# Never give up on a program: with the one-second-a-try back-off that is years of retries.
START_RETRIES = 1_000_000


@dataclass(frozen=True)
class Program:
    """One supervised program. The defaults suit our Python services."""

    name: str
    command: list[str]
    # Dying sooner than this after a start counts as a failed start and backs off.
    startsecs: int = 5
    # SIGTERM, then SIGKILL after this: longer than a worker takes to finish its batch.
    stopwaitsecs: int = 15


def worker(index: int, metrics_base: int) -> Program:
    name = f"dev-worker-{index}"
    metrics = metrics_base + index if metrics_base else 0
    return Program(name, [PY, "-m", "workers", "--name", name, "--metrics-port", str(metrics)])


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def configure_auth(host: str) -> None:
    """Keys unless told otherwise, but a stack on a loopback address with AUTH_DISABLED not
    set runs without them, so the seed walkthroughs' curl commands work as written; any
    other bind keeps keys required (create one with `python -m scripts.keys create`)."""
    if "AUTH_DISABLED" in os.environ:
        return
    loopback = host in LOOPBACK
    os.environ["AUTH_DISABLED"] = "true" if loopback else "false"
    if loopback:
        print("dev: no API keys on this loopback stack (AUTH_DISABLED=true)", file=sys.stderr)
    else:
        print(f"dev: API keys required on {host} (python -m scripts.keys create)", file=sys.stderr)


def default_api_processes() -> int:
    """Half the cores: the API shares the box with PostgreSQL, Redis and the workers, and on
    this 2-core box one process stored more single events than two
    (docs/ingest-single.md)."""
    return max(1, (os.cpu_count() or 1) // 2)


def programs(args: argparse.Namespace) -> list[Program]:
    """Everything `make run` supervises, one line per program. The API's processes are
    uvicorn's `--workers` (it forks and restarts them; stopasgroup stops them with it)."""
    api = ["app.main:app", "--host", args.host, "--port", str(args.port), "--no-access-log"]
    if args.api_processes > 1:
        api += ["--workers", str(args.api_processes)]
    # Next to the API's port unless told otherwise (8000 -> 8001), so a second stack on
    # other ports does not collide with the first one's forecaster.
    forecast_port = args.forecast_port or args.port + 1
    forecast = ["forecast.main:app", "--host", args.host, "--port", str(forecast_port)]
    return [
        Program("api", [PY, "-m", "uvicorn", *api]),
        *(worker(index, args.metrics_port) for index in range(args.workers)),
        Program("forecast", [PY, "-m", "uvicorn", *forecast, "--no-access-log"]),
    ]


# Config -------------------------------------------------------------------------------


def _value(text: str) -> str:
    # supervisor expands %(name)s in every value; a literal % must be doubled.
    return text.replace("%", "%%")


def _section(name: str, values: dict[str, str]) -> str:
    lines = [f"[{name}]", *(f"{key}={_value(value)}" for key, value in values.items())]
    return "\n".join(lines) + "\n"


def _console() -> dict[str, str]:
    # Through supervisord to our own stdout, as the programs wrote before.
    return {
        "redirect_stderr": "true",
        "stdout_logfile": "/dev/stdout",
        "stdout_logfile_maxbytes": "0",
    }


def supervisor_config(state: Path, programs: list[Program]) -> str:
    """supervisord.conf: foreground, a private unix socket, and one group holding every
    program so a shutdown stops them all at once rather than one after another."""
    socket = state / "supervisor.sock"
    # A password on the socket too (it is 0700 already), so supervisord has no reason to
    # log a CRIT line about running without authentication.
    auth = {"username": "dev", "password": secrets.token_hex(16)}
    daemon = {
        "nodaemon": "true",
        "logfile": str(state / "supervisord.log"),
        "logfile_maxbytes": "10MB",
        "logfile_backups": "1",
        "pidfile": str(state / "supervisord.pid"),
        "childlogdir": str(state),
        "loglevel": "info",
    }
    if os.geteuid() == 0:
        daemon["user"] = "root"  # said, so supervisord does not warn about it
    sections = [
        _section("unix_http_server", {"file": str(socket), "chmod": "0700", **auth}),
        _section("supervisord", daemon),
        _section(
            "rpcinterface:supervisor",
            {"supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"},
        ),
        _section("supervisorctl", {"serverurl": f"unix://{socket}", **auth}),
        _section(f"group:{GROUP}", {"programs": ",".join(p.name for p in programs)}),
    ]
    for program in programs:
        sections.append(
            _section(
                f"program:{program.name}",
                {
                    "command": shlex.join(program.command),
                    "directory": str(ROOT),
                    "autostart": "true",
                    "autorestart": "true",
                    "startsecs": str(program.startsecs),
                    "startretries": str(START_RETRIES),
                    "stopsignal": "TERM",
                    "stopwaitsecs": str(program.stopwaitsecs),
                    # A program that forks (uvicorn --workers K) is stopped as a whole.
                    "stopasgroup": "true",
                    "killasgroup": "true",
                    "environment": 'PYTHONUNBUFFERED="1"',
                    **_console(),
                },
            )
        )
    listener = [PY, "-m", "scripts.dev", "--listen", str(state)]
    sections.append(
        _section(
            f"eventlistener:{LISTENER}",
            {
                "command": shlex.join(listener),
                "directory": str(ROOT),
                "events": "PROCESS_STATE",
                "autorestart": "true",
                "startretries": str(START_RETRIES),
                "buffer_size": "1000",
                # stdout is the event protocol; what it prints goes to stderr.
                "stderr_logfile": "/dev/stderr",
                "stderr_logfile_maxbytes": "0",
            },
        )
    )
    return "\n".join(sections)


# The event listener ---------------------------------------------------------------------


def status_path(state: Path) -> Path:
    return state / "status.json"


def read_status(state: Path) -> dict[str, dict[str, Any]]:
    """Per program: state, pid, starts, restarts and the last exit reason."""
    try:
        found: dict[str, dict[str, Any]] = json.loads(status_path(state).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return found


def _write_status(state: Path, status: dict[str, dict[str, Any]]) -> None:
    part = status_path(state).with_suffix(".part")
    part.write_text(json.dumps(status, indent=1, sort_keys=True))
    part.replace(status_path(state))  # whole or not at all, for a reader polling it


def _exit_reason(state: Path, name: str) -> str:
    """The reason supervisord logged (`terminated by SIGKILL; not expected`): its events
    carry no exit status, and a restarted process's info no longer has it."""
    marker = f"exited: {name} ("
    with contextlib.suppress(OSError), (state / "supervisord.log").open("rb") as log:
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - 65536))
        for line in reversed(log.read().decode(errors="replace").splitlines()):
            if marker in line:
                return line.split(marker, 1)[1].rstrip(")")
    return "reason not logged"


def record(
    state: Path, status: dict[str, dict[str, Any]], event: str, fields: dict[str, str]
) -> None:
    """Fold one PROCESS_STATE event into the status; print a line for each restart."""
    name = fields["processname"]
    entry = status.setdefault(
        name, {"state": "", "pid": None, "starts": 0, "restarts": 0, "last_exit": None}
    )
    entry["state"] = event.removeprefix("PROCESS_STATE_")
    if entry["state"] == "STARTING":
        entry["starts"] += 1
        if fields.get("from_state") in ("EXITED", "BACKOFF"):
            entry["restarts"] += 1
            print(
                f"dev: restarting {name} (restart {entry['restarts']}); "
                f"it exited: {entry['last_exit']}",
                file=sys.stderr,
                flush=True,
            )
    elif entry["state"] == "RUNNING":
        entry["pid"] = int(fields["pid"])
    elif entry["state"] in ("EXITED", "BACKOFF"):
        entry["pid"] = None
        entry["last_exit"] = _exit_reason(state, name)
    elif entry["state"] == "FATAL":
        print(f"dev: supervisord gave up on {name}", file=sys.stderr, flush=True)


def listen(state: Path) -> None:
    """supervisord's event listener: stdin and stdout speak its protocol."""
    status = read_status(state)  # a restarted listener keeps the counts
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        fields = cast(dict[str, str], childutils.get_headers(payload.split("\n", 1)[0]))
        if fields.get("processname") != LISTENER:
            record(state, status, str(headers["eventname"]), fields)
            _write_status(state, status)
        childutils.listener.ok(sys.stdout)


# Running supervisord --------------------------------------------------------------------


@contextlib.contextmanager
def rpc(state: Path) -> Iterator[Any]:
    """supervisord's XML-RPC interface over its unix socket (`.supervisor.getAllProcessInfo()`),
    closed on the way out."""
    config = configparser.RawConfigParser()
    config.read(state / "supervisord.conf")
    ctl = config["supervisorctl"]
    transport = SupervisorTransport(ctl["username"], ctl["password"], ctl["serverurl"])
    with xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport) as proxy:
        yield proxy


def _die_with_parent() -> None:
    # supervisord runs in its own session, out of reach of the terminal's Ctrl-C (we stop it
    # ourselves), so it must not outlive us either: Linux sends it SIGTERM when we die.
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def supervised(state: Path, programs: list[Program]) -> Iterator[subprocess.Popen[bytes]]:
    """supervisord in the foreground; stopped (and waited for) on the way out."""
    state.mkdir(parents=True, exist_ok=True)
    status_path(state).unlink(missing_ok=True)
    conf = state / "supervisord.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)  # it holds the socket's password
    conf.write_text(supervisor_config(state, programs))
    daemon = subprocess.Popen(
        [PY, "-m", "supervisor.supervisord", "-c", str(conf)],
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        yield daemon
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            # It stops every program at once, each within its stopwaitsecs.
            daemon.wait(timeout=max(p.stopwaitsecs for p in programs) + 10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def migrate() -> None:
    subprocess.run([PY, "-m", "alembic", "upgrade", "head"], check=True, cwd=ROOT)


def summary(state: Path) -> str:
    status = read_status(state)
    counts = ", ".join(f"{name} {entry['restarts']}" for name, entry in sorted(status.items()))
    return f"dev: restarts this run: {counts or 'none recorded'}"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.dev",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    parser.add_argument(
        "--api-processes",
        type=int,
        default=int(os.environ.get("API_PROCESSES", str(default_api_processes()))),
        help="uvicorn processes for the API (default: half the cores, at least one)",
    )
    parser.add_argument("--host", default=os.environ.get("API_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT", "8000")))
    parser.add_argument(
        "--forecast-port",
        type=int,
        default=int(os.environ.get("FORECAST_PORT", "0")),
        help="the forecaster's port (default: the API's port + 1)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("WORKER_METRICS_PORT", "9101")),
        help="worker I serves metrics on this port + I (0: off)",
    )
    parser.add_argument(
        "--private-redis-port",
        type=int,
        default=int(os.environ.get("PRIVATE_REDIS_PORT", services.PRIVATE_REDIS_PORT)),
        help="where a persistent Redis starts when the default one is volatile",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        default=os.environ.get("CLUSTER", "") not in ("", "0"),
        help="queue on a local Redis Cluster (scripts/cluster.py): 3 masters + 3 replicas "
        "from --cluster-port, under .data/cluster-PORT; CLUSTER=1 says the same",
    )
    parser.add_argument(
        "--cluster-port",
        type=int,
        default=int(os.environ.get("CLUSTER_PORT", str(cluster.DEFAULT_PORT))),
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="config, socket, logs (.data/dev-PORT)"
    )
    parser.add_argument("--listen", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.listen is not None:
        listen(args.listen)
        return 0
    state: Path = args.state_dir or services.DATA / f"dev-{args.port}"
    stack = programs(args)
    stopping: list[int] = []
    daemon: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    started = services.up(switch_redis=True, private_redis_port=args.private_redis_port)
    os.environ["REDIS_URL"] = started.redis_url  # supervisord, so every program, inherits it
    configure_auth(args.host)
    nodes = start_cluster(args) if args.cluster else None
    code = 0
    try:
        try:
            if not stopping:
                migrate()
        except subprocess.CalledProcessError:
            if stopping:  # Ctrl-C reached alembic too
                return 0
            raise
        if stopping:
            return 0
        with supervised(state, stack) as daemon:
            names = ", ".join(program.name for program in stack)
            print(
                f"dev: API on http://{args.host}:{args.port}, forecaster on "
                f"http://{args.host}:{args.forecast_port or args.port + 1}; supervising {names} "
                f"(state in {state}); Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
            # A signal before `daemon` was bound found nothing to forward: supervised()
            # stops supervisord on the way out then.
            if not stopping:
                code = daemon.wait()
            if not stopping:
                print(f"dev: supervisord exited on its own ({code}); stopping", file=sys.stderr)
                code = code or 1
        print(summary(state), file=sys.stderr, flush=True)
    finally:
        if nodes is not None:
            nodes.stop()
        services.down(started.names)
    return code


def start_cluster(args: argparse.Namespace) -> cluster.Cluster:
    """The local cluster (started, or found running on its ports) for every program:
    REDIS_CLUSTER_URL and STREAM_SHARDS (default: 2 per master) in the environment."""
    nodes = cluster.Cluster(
        services.DATA, masters=3, replicas=1, port=args.cluster_port, daemonize=True
    )
    nodes.start()
    os.environ["REDIS_CLUSTER_URL"] = nodes.url
    os.environ.setdefault("STREAM_SHARDS", str(2 * nodes.masters))
    print(
        f"dev: Redis Cluster on {nodes.url} (3 masters, 3 replicas, data under "
        f"{services.DATA}/cluster-*), {os.environ['STREAM_SHARDS']} stream shards",
        file=sys.stderr,
        flush=True,
    )
    return nodes


if __name__ == "__main__":
    raise SystemExit(main())
