"""Make sure PostgreSQL and Redis answer at DATABASE_URL and REDIS_URL.

When nothing answers at a local address but the server programs are installed, start a
private instance under .data/ (ignored by git) and stop it afterwards.

    python -m scripts.services exec -- CMD...   run CMD with the services up
    python -m scripts.services up               start what is missing and leave it running
    python -m scripts.services down             stop the private instances
"""

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from app.core.settings import dsn, get_settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
INSTALL_HINT = (
    "install the server programs: Debian/Ubuntu `apt-get install postgresql redis-server`, "
    "macOS `brew install postgresql@15 redis`"
)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait(host: str, port: int, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _answers(host, port):
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start on {host}:{port}; see the log under {DATA}")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; use the distribution's postgres account then.
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise SystemExit("run as a non-root user, or create a 'postgres' user") from None
    return ["runuser", "-u", "postgres", "--", *cmd]


def start_postgres(host: str, port: int) -> bool:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise SystemExit(f"PostgreSQL does not answer on {host}:{port}; {INSTALL_HINT}")
    data = DATA / "postgres"
    DATA.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chmod(DATA, 0o755)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres")
        subprocess.run(
            _as_postgres_user(
                [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data}"
    subprocess.run(
        _as_postgres_user(
            [pg_ctl, "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _wait(host, port, "PostgreSQL")
    return True


def redis_server_args(
    server: str, port: int, data: Path, appendfsync: str = "everysec"
) -> list[str]:
    """A loopback redis-server with AOF persistence, as the compose file runs it."""
    return [
        server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
        "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
    ]  # fmt: skip


def start_redis(host: str, port: int) -> bool:
    server = shutil.which("redis-server")
    if not server:
        raise SystemExit(f"Redis does not answer on {host}:{port}; {INSTALL_HINT}")
    data = DATA / "redis"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *redis_server_args(server, port, data),
            "--daemonize",
            "yes",
            "--pidfile",
            str(data / "redis.pid"),
            "--logfile",
            str(data / "redis.log"),
        ],
        check=True,
    )
    _wait(host, port, "Redis")
    return True


def _endpoints() -> tuple[tuple[str, int], tuple[str, int]]:
    settings = get_settings()
    pg = urlsplit(dsn(settings.database_url))
    rd = urlsplit(settings.redis_url)
    return (pg.hostname or "127.0.0.1", pg.port or 5432), (
        rd.hostname or "127.0.0.1",
        rd.port or 6379,
    )


def up() -> list[str]:
    """Start what does not answer; returns the names of the instances started here."""
    started: list[str] = []
    (pg_host, pg_port), (rd_host, rd_port) = _endpoints()
    if not _answers(pg_host, pg_port):
        if pg_host not in LOCAL_HOSTS:
            raise SystemExit(f"PostgreSQL does not answer on {pg_host}:{pg_port}")
        start_postgres(pg_host, pg_port)
        started.append("postgres")
    if not _answers(rd_host, rd_port):
        if rd_host not in LOCAL_HOSTS:
            raise SystemExit(f"Redis does not answer on {rd_host}:{rd_port}")
        start_redis(rd_host, rd_port)
        started.append("redis")
    for name in started:
        print(f"services: started a private {name} under {DATA}", file=sys.stderr)
    return started


def down(names: list[str] | None = None) -> None:
    names = names if names is not None else ["postgres", "redis"]
    if "postgres" in names and (DATA / "postgres" / "postmaster.pid").exists():
        pg_ctl = _pg_bin("pg_ctl")
        if pg_ctl:
            subprocess.run(
                _as_postgres_user(
                    [pg_ctl, "-D", str(DATA / "postgres"), "-m", "fast", "-w", "stop"]
                ),
                check=False,
                stdout=subprocess.DEVNULL,
            )
    pidfile = DATA / "redis" / "redis.pid"
    if "redis" in names and pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), 15)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.services", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "exec"])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.action == "up":
        up()
    elif args.action == "down":
        down()
    else:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        started = up()
        try:
            code = subprocess.call(command)
        finally:
            down(started)
        raise SystemExit(code)


if __name__ == "__main__":
    main()
