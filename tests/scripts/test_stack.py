"""`make run` (scripts.dev) as a new user runs it, as real processes: a worker or the API
killed with SIGKILL is restarted, logged and counted while the rest keeps serving, and
SIGTERM stops every process the launcher started, exiting 0."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts import dev
from scripts.stack import free_port
from tests.scripts.conftest import StartRedis, until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Launcher:
    process: subprocess.Popen[bytes]
    state: Path
    log: Path
    port: int

    def answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def programs(self) -> dict[str, dict[str, Any]]:
        """supervisord's own view: name -> getProcessInfo (pid, statename, ...)."""
        with dev.rpc(self.state) as supervisord:
            infos: list[dict[str, Any]] = supervisord.supervisor.getAllProcessInfo()
        return {info["name"]: info for info in infos}

    def restarts(self, name: str) -> int:
        count: int = dev.read_status(self.state).get(name, {}).get("restarts", 0)
        return count

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> set[int]:
        """supervisord and everything it runs."""
        daemon = int((self.state / "supervisord.pid").read_text())
        return {daemon, *(info["pid"] for info in self.programs().values() if info["pid"])}


@pytest.fixture
def launcher(database_url: str, redis_server: StartRedis, tmp_path: Path) -> Iterator[Launcher]:
    # A private AOF Redis, so the launcher keeps it (no switch) and nothing shares db 0.
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_server()}
    port = free_port()
    state = tmp_path / "dev"
    log = tmp_path / "launcher.log"
    command = [sys.executable, "-m", "scripts.dev", "--workers", "2", "--port", str(port)]
    command += ["--metrics-port", "0", "--state-dir", str(state)]
    # Appending: supervisord reopens /dev/stdout, which is this file, and writes at its end.
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    running = Launcher(process, state, log, port)
    try:
        until(lambda: running.answers() or process.poll() is not None, 60, "API answering")
        assert process.poll() is None, running.output()
        # The API, two workers and the forecaster.
        until(lambda: len(dev.read_status(state)) == 4, 20, "four programs reported")
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def sigterm_stops_everything(launcher: Launcher) -> None:
    pids = launcher.pids()
    started = time.monotonic()
    launcher.process.send_signal(signal.SIGTERM)
    assert launcher.process.wait(timeout=30) == 0, launcher.output()
    assert time.monotonic() - started < 30
    until(lambda: all(gone(pid) for pid in pids), 5, f"every child of {pids} gone")
    assert not launcher.answers()


def restarted(launcher: Launcher, name: str, old_pid: int) -> bool:
    info = launcher.programs()[name]
    return info["pid"] not in (0, old_pid) and launcher.restarts(name) == 1


def test_a_killed_worker_is_restarted_while_the_api_serves_then_sigterm_stops_all(
    launcher: Launcher,
) -> None:
    old = launcher.programs()["dev-worker-0"]["pid"]
    os.kill(old, signal.SIGKILL)

    def back() -> bool:
        assert launcher.answers(), "the API stopped answering"
        return restarted(launcher, "dev-worker-0", old)

    until(back, 20, "dev-worker-0 restarted")
    assert launcher.restarts("dev-worker-1") == launcher.restarts("api") == 0
    assert gone(old)
    until(
        lambda: (
            "dev: restarting dev-worker-0 (restart 1); it exited: terminated by SIGKILL"
            in launcher.output()
        ),
        5,
        "the restart logged",
    )
    sigterm_stops_everything(launcher)
    assert "dev: restarts this run: api 0, dev-worker-0 1, dev-worker-1 0" in launcher.output()


def test_a_killed_api_is_restarted(launcher: Launcher) -> None:
    old = launcher.programs()["api"]["pid"]
    os.kill(old, signal.SIGKILL)
    until(lambda: restarted(launcher, "api", old) and launcher.answers(), 30, "API back")
    assert "dev: restarting api (restart 1); it exited: terminated by SIGKILL" in launcher.output()
    sigterm_stops_everything(launcher)
