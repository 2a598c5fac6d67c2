"""The generator as a process against an API that is gone (nothing listens, 503 for ever, or
requests that hang): it stops on its own at the end of --duration plus --grace, on SIGTERM
within its stop grace, and at once on a second signal, with the ground truth complete."""

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from scripts.stack import free_port
from tests.scripts.conftest import until

ROOT = Path(__file__).resolve().parents[2]
# Startup (imports) and the last tick: what a run takes beyond the bounds it is given.
SLACK_S = 4.0


class GoneAPI(ThreadingHTTPServer):
    """Answers 503 to everything, or ("hang") reads each request and never answers."""

    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.requests = 0
        self.released = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: GoneAPI

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.requests += 1
        if self.server.mode == "hang":
            self.server.released.wait()
            return
        self.send_response(503)
        self.send_header("Retry-After", "1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[tuple[str, GoneAPI | None]]:
    """The URL of a gone API: `refused` (no server), `503` or `hang`."""
    mode: str = request.param
    if mode == "refused":
        yield f"http://127.0.0.1:{free_port()}", None
        return
    server = GoneAPI(mode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def generator(url: str, truth: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "scripts.generate", "--url", url, "--quiet"]
    command += ["--rate", "500", "--devices", "50", "--ground-truth", str(truth), *args]
    return subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)


def finished(process: subprocess.Popen[bytes], seconds: float) -> tuple[int, str, float]:
    started = time.monotonic()
    _, err = process.communicate(timeout=seconds)
    return process.returncode, err.decode(), time.monotonic() - started


def complete_truth(path: Path) -> dict[str, Any]:
    """Every line whole JSON, header first, footer last; returns the footer's counts."""
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert lines[0]["truth"] == 1 and lines[-1]["end"] == 1
    counts: dict[str, Any] = lines[-1]["counts"]
    assert sum(1 for line in lines if line.get("u")) == counts["unconfirmed"]
    return counts


@pytest.mark.parametrize("api", ["refused", "503", "hang"], indirect=True)
def test_it_ends_on_its_own_after_duration_and_grace(
    api: tuple[str, GoneAPI | None], tmp_path: Path
) -> None:
    url, _ = api
    truth = tmp_path / "truth.ndjson"
    started = time.monotonic()
    process = generator(url, truth, "--duration", "2", "--grace", "2", "--no-follow")
    code, err, _ = finished(process, 2 + 2 + SLACK_S + 10)
    assert time.monotonic() - started < 2 + 2 + SLACK_S, err
    assert code == 1, err  # nothing was acknowledged
    assert "generate: 0 events acknowledged;" in err and "sent but never acknowledged" in err
    counts = complete_truth(truth)
    assert counts["confirmed"] == 0 and counts["unconfirmed"] + counts["unsent"] > 0


@pytest.mark.parametrize("api", ["503"], indirect=True)
def test_sigterm_mid_run_stops_it_within_the_stop_grace(
    api: tuple[str, GoneAPI | None], tmp_path: Path
) -> None:
    url, server = api
    assert server is not None
    truth = tmp_path / "truth.ndjson"
    process = generator(url, truth, "--duration", "60")
    until(lambda: server.requests > 5, 15, "requests reaching the API")
    process.send_signal(signal.SIGTERM)
    code, err, took = finished(process, 20)
    assert took < 5 + SLACK_S, err  # the default --stop-grace is 5 s
    assert "generate: SIGTERM: stopping" in err and "generate: run " in err
    assert code == 1
    counts = complete_truth(truth)
    assert counts["unconfirmed"] > 0


@pytest.mark.parametrize("api", ["hang"], indirect=True)
def test_a_second_signal_gives_up_at_once(api: tuple[str, GoneAPI | None], tmp_path: Path) -> None:
    url, server = api
    assert server is not None
    truth = tmp_path / "truth.ndjson"
    process = generator(url, truth, "--duration", "60", "--no-follow")
    until(lambda: server.requests >= 8, 15, "every sender waiting on an answer")
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGINT)
    code, err, took = finished(process, 20)
    assert took < SLACK_S, err  # well within the 5 s stop grace
    assert "a second signal: giving up what is left" in err
    counts = complete_truth(truth)
    assert counts["unconfirmed"] > 0 and code == 1
