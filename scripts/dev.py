"""`make run`: the whole stack on this machine, no Docker.

Makes sure PostgreSQL and Redis answer (starting private ones if needed, and moving a
volatile default Redis to a private persistent one: see scripts/services.py), applies the
migrations, then runs the API on :8000 and two workers until Ctrl-C or SIGTERM, and
stops everything it started.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from scripts import services


def migrate() -> None:
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.dev", description=__doc__)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    parser.add_argument("--host", default=os.environ.get("API_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT", "8000")))
    args = parser.parse_args()

    started = services.up(switch_redis=True)
    os.environ["REDIS_URL"] = started.redis_url  # every child inherits it
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        migrate()
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app.main:app",
                    "--host",
                    args.host,
                    "--port",
                    str(args.port),
                    "--no-access-log",
                ]
            )
        )
        for index in range(args.workers):
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "workers",
                        "--name",
                        f"dev-worker-{index}",
                        "--metrics-port",
                        str(9101 + index),
                    ]
                )
            )
        print(
            f"dev: API on http://{args.host}:{args.port}, {args.workers} workers; Ctrl-C stops",
            file=sys.stderr,
        )
        while not stopping:
            if any(child.poll() is not None for child in children):
                print("dev: a process exited; stopping the stack", file=sys.stderr)
                break
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        services.down(started.names)


if __name__ == "__main__":
    main()
