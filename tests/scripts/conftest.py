"""Loopback redis-servers for the launcher's tests, and a poll with a deadline for code that
waits on other processes (the async `tests.helpers.wait_for` serves in-process tests)."""

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import RedisError

from scripts.services import redis_server_args
from scripts.stack import free_port

StartRedis = Callable[..., str]


def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `check` until it holds; fail naming `what` past the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s")


def pings(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[StartRedis]:
    """Start a redis-server on a free port (AOF unless the extra arguments say otherwise,
    later arguments win); returns its URL. Each one is stopped on the way out."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("needs redis-server")
    started: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> str:
        port = free_port()
        data = tmp_path / f"redis-{port}"
        data.mkdir()
        process = subprocess.Popen(
            [*redis_server_args(server, port, data), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        url = f"redis://127.0.0.1:{port}/0"
        until(lambda: pings(url), 10, f"redis-server on {port}")
        return url

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)
