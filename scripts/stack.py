"""The stack as child processes on free local ports, for the fault runs and the benchmark:
a private Redis with AOF, the API (uvicorn), workers, the naive baseline.

`async with Stack(...)` stops everything it started on the way out, failure or not.
"""

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from scripts.services import redis_server_args

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    port: int | None = None
    starts: int = 0

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, as a crash or the OOM killer would."""
        if self.running:
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait()

    async def wait(self, limit_s: float) -> int | None:
        """Wait for the process to exit on its own; SIGTERM it after `limit_s`."""
        for _ in range(int(limit_s / 0.1)):
            if self.popen is None or self.popen.poll() is not None:
                break
            await asyncio.sleep(0.1)
        return await self.stop()

    async def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after the grace period; returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            for _ in range(int(grace_s / 0.05)):
                if self.popen.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            if self.popen.poll() is None:
                self.popen.kill()
        return self.popen.wait()


@dataclass
class Stack:
    """Children sharing one environment (DATABASE_URL, REDIS_URL and any overrides)."""

    workdir: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    async def __aenter__(self) -> "Stack":
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for child in reversed(self.children):
            await child.stop(grace_s=10)

    def child(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(
            name,
            args,
            # The tools' stacks name tenants in X-Tenant-ID, as a gateway in front would.
            {
                **os.environ,
                "LOG_LEVEL": "WARNING",
                "TRUSTED_TENANT_HEADER": "true",
                **self.env,
                **(env or {}),
            },
            self.workdir / f"{name}.log",
        )
        self.children.append(child)
        return child

    # Redis ----------------------------------------------------------------------------

    def redis_child(self, port: int | None = None, appendfsync: str = "everysec") -> Child:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed")
        port = port or free_port()
        data = self.workdir / f"redis-{port}"
        data.mkdir(exist_ok=True)
        child = self.child(
            f"redis-{port}",
            [*redis_server_args(server, port, data, appendfsync), "--protected-mode", "no"],
        )
        child.port = port
        return child

    async def start_redis(self, child: Child) -> None:
        child.start()
        await wait_redis(child)

    # API, workers, baseline -------------------------------------------------------------

    def api_child(
        self, port: int | None = None, env: dict[str, str] | None = None, processes: int = 1
    ) -> Child:
        extra = ["--workers", str(processes)] if processes > 1 else []
        return self._uvicorn_child("api", "app.main:app", port, env, extra)

    def worker_child(
        self, name: str, env: dict[str, str] | None = None, metrics_port: int = 0
    ) -> Child:
        args = [sys.executable, "-m", "workers", "--name", name]
        if metrics_port:
            args += ["--metrics-port", str(metrics_port)]
        child = self.child(name, args, env)
        child.port = metrics_port or None
        return child

    def forecaster_child(self, port: int | None = None, env: dict[str, str] | None = None) -> Child:
        return self._uvicorn_child("forecaster", "forecast.main:app", port, env)

    def baseline_child(self, port: int | None = None, env: dict[str, str] | None = None) -> Child:
        return self._uvicorn_child("baseline", "scripts.baseline:app", port, env)

    def _uvicorn_child(
        self,
        label: str,
        app: str,
        port: int | None,
        env: dict[str, str] | None,
        extra: list[str] | None = None,
    ) -> Child:
        port = port or free_port()
        args = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
        args += extra or []
        child = self.child(
            f"{label}-{port}", [*args, "--no-access-log", "--log-level", "warning"], env
        )
        child.port = port
        return child

    async def start_http(self, child: Child, seconds: float = 30.0) -> None:
        child.start()
        await wait_http(child, seconds)


async def wait_http(child: Child, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    url = f"http://127.0.0.1:{child.port}/healthz"
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if not child.running:
                raise RuntimeError(f"{child.name} exited; see {child.log}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer within {seconds} s; see {child.log}")


async def wait_redis(child: Child, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    client = Redis(host="127.0.0.1", port=child.port or 6379, socket_connect_timeout=1)
    try:
        while time.monotonic() < deadline:
            if not child.running:
                raise RuntimeError(f"{child.name} exited; see {child.log}")
            with contextlib.suppress(RedisError, OSError):
                # LOADING is an error reply: the AOF must be replayed before we go on.
                if await client.ping():
                    return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    raise RuntimeError(f"{child.name} did not answer within {seconds} s; see {child.log}")
