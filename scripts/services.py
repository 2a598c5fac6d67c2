"""Make sure PostgreSQL and Redis answer at DATABASE_URL and REDIS_URL.

When nothing answers at a local address but the server programs are installed, start a
private instance under .data/ (ignored by git) and stop it afterwards.

Once Redis answers, one line says how durable it is: `volatile` (no AOF: a restart drops
every queued event), `os-buffered` (AOF with appendfsync everysec or no: a Redis crash
loses nothing, a machine crash about a second) or `fsync` (AOF always), and whether it
evicts keys (any maxmemory-policy but noeviction may drop stream entries or dedupe marks).
`up(switch_redis=True)`, which `make run` uses, goes one step further: when REDIS_URL is
not set and the Redis at the default address is volatile or evicting, it starts a private
persistent one on 127.0.0.1:6390 (a free port if that one is taken by something else)
under .data/redis-6390 and returns its URL for the children. An explicit REDIS_URL is
used as it is, with the same line as a warning. `exec` never switches: the tests expect
the machine's Redis.

    python -m scripts.services exec -- CMD...   run CMD with the services up
    python -m scripts.services up               start what is missing and leave it running
    python -m scripts.services down             stop the private instances
"""

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from redis.exceptions import RedisError

from app.core.settings import Settings, dsn

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Fixed, so a run after a crash finds the same instance, or restarts it on the same AOF.
PRIVATE_REDIS_PORT = 6390
# A bound, so a stuck consumer group cannot take the machine. It holds the backlog the API
# allows (BACKLOG_MAX_ENTRIES) many times over plus some 20 million dedupe marks (about
# 100 bytes each); past it, with noeviction, Redis refuses the enqueue script and the API
# answers errors instead of evicting marks or stream entries without a word.
PRIVATE_REDIS_MAXMEMORY = "2gb"
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
    server: str,
    port: int,
    data: Path,
    appendfsync: str = "everysec",
    maxmemory: str = PRIVATE_REDIS_MAXMEMORY,
) -> list[str]:
    """A loopback redis-server with AOF persistence, as the compose file runs it, bounded in
    memory and refusing writes when full rather than evicting queued events."""
    return [
        server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
        "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
        "--maxmemory", maxmemory, "--maxmemory-policy", "noeviction",
    ]  # fmt: skip


def start_redis(host: str, port: int, data: Path | None = None) -> bool:
    server = shutil.which("redis-server")
    if not server:
        raise SystemExit(f"Redis does not answer on {host}:{port}; {INSTALL_HINT}")
    data = data or DATA / "redis"
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


Level = Literal["volatile", "os-buffered", "fsync", "unknown"]


@dataclass(frozen=True)
class Durability:
    """What a Redis keeps across a restart, from its CONFIG."""

    level: Level
    appendonly: str = ""
    appendfsync: str = ""
    maxmemory_policy: str = ""
    error: str = ""

    @property
    def evicting(self) -> bool:
        return self.maxmemory_policy not in ("", "noeviction")

    @property
    def safe(self) -> bool:
        """Queued events survive a Redis restart and are never evicted."""
        return self.level in ("os-buffered", "fsync") and not self.evicting

    def describe(self) -> str:
        if self.level == "unknown":
            return f"of unknown durability ({self.error})"
        if self.level == "volatile":
            text = "volatile (appendonly no)"
        else:
            text = f"{self.level} (AOF, appendfsync {self.appendfsync})"
        if self.evicting:
            text += f" and evicting (maxmemory-policy {self.maxmemory_policy})"
        return text


def classify(appendonly: str, appendfsync: str, maxmemory_policy: str) -> Durability:
    if appendonly != "yes":
        level: Level = "volatile"
    elif appendfsync == "always":
        level = "fsync"
    else:
        level = "os-buffered"
    return Durability(level, appendonly, appendfsync, maxmemory_policy)


def redis_durability(url: str) -> Durability:
    """Read appendonly, appendfsync and maxmemory-policy; `unknown` where CONFIG is refused
    (managed services often rename it)."""
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        found: dict[str, str] = {}
        for name in ("appendonly", "appendfsync", "maxmemory-policy"):
            reply = client.config_get(name)
            found[name] = str(reply.get(name, ""))
    except (RedisError, OSError) as error:
        return Durability("unknown", error=f"CONFIG GET failed: {error}")
    finally:
        client.close()
    return classify(found["appendonly"], found["appendfsync"], found["maxmemory-policy"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _with_port(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _endpoint(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@dataclass
class Started:
    """What up() found: the private instances it started (stop only those) and the Redis
    URL the children should use."""

    names: list[str] = field(default_factory=list)
    redis_url: str = DEFAULT_REDIS_URL


def _private_redis(url: str, preferred_port: int, started: Started) -> tuple[str, str]:
    """A persistent Redis for this run: the one already on the preferred port when it is
    persistent (another run's, or one left by a crash: its AOF holds queued events), else
    a new one there or on a free port. Returns its URL and how it was had. One found running
    is not this run's to stop."""
    port = preferred_port
    if _answers("127.0.0.1", port):
        candidate = _with_port(url, "127.0.0.1", port)
        if redis_durability(candidate).safe:
            return candidate, f"using the persistent Redis already on 127.0.0.1:{port}"
        port = _free_port()
    data = DATA / f"redis-{port}"
    start_redis("127.0.0.1", port, data)
    started.names.append(data.name)
    how = f"starting a private persistent Redis on 127.0.0.1:{port} under {data}"
    return _with_port(url, "127.0.0.1", port), how


def up(
    *,
    switch_redis: bool = False,
    default_redis_url: str = DEFAULT_REDIS_URL,
    private_redis_port: int = PRIVATE_REDIS_PORT,
) -> Started:
    """Start what does not answer and report Redis durability; with `switch_redis`, move a
    volatile or evicting default Redis to a private persistent one (see the docstring)."""
    settings = Settings()
    explicit = "redis_url" in settings.model_fields_set
    started = Started(redis_url=settings.redis_url if explicit else default_redis_url)
    pg_host, pg_port = _endpoint(dsn(settings.database_url), 5432)
    rd_host, rd_port = _endpoint(started.redis_url, 6379)
    if not _answers(pg_host, pg_port):
        if pg_host not in LOCAL_HOSTS:
            raise SystemExit(f"PostgreSQL does not answer on {pg_host}:{pg_port}")
        start_postgres(pg_host, pg_port)
        started.names.append("postgres")
    if not _answers(rd_host, rd_port):
        if rd_host not in LOCAL_HOSTS:
            raise SystemExit(f"Redis does not answer on {rd_host}:{rd_port}")
        start_redis(rd_host, rd_port)
        started.names.append("redis")
    for name in started.names:
        print(f"services: started a private {name} under {DATA}", file=sys.stderr)
    durability = redis_durability(started.redis_url)
    line = f"services: Redis at {rd_host}:{rd_port} is {durability.describe()}"
    if durability.safe or durability.level == "unknown":
        print(line, file=sys.stderr)
    elif switch_redis and not explicit:
        started.redis_url, how = _private_redis(started.redis_url, private_redis_port, started)
        print(f"{line}; {how}", file=sys.stderr)
        print(f"services: the children use REDIS_URL={started.redis_url}", file=sys.stderr)
    elif explicit:
        print(f"{line}; REDIS_URL is set, so it is used as it is", file=sys.stderr)
    else:
        print(f"{line}; a restart of it drops every queued event", file=sys.stderr)
    return started


def _stop_redis(data: Path, seconds: float = 10.0) -> None:
    pidfile = data / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
        # A pidfile left by a killed Redis may name another process by now.
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.parent.parent.exists() and b"redis" not in cmdline.read_bytes():
            return
        os.kill(pid, 15)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return
    # SIGTERM makes Redis fsync the AOF and exit; wait for that, so a new one can start.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def down(names: list[str] | None = None) -> None:
    """Stop the named private instances ("postgres", "redis", "redis-PORT"); all by default."""
    if names is None:
        names = ["postgres", *(path.parent.name for path in DATA.glob("redis*/redis.pid"))]
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
    for name in names:
        if name == "redis" or name.startswith("redis-"):
            _stop_redis(DATA / name)


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
            down(started.names)
        raise SystemExit(code)


if __name__ == "__main__":
    main()
