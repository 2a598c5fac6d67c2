"""schemathesis against the running API's own OpenAPI: no server errors, and every answer
matches the schema published for its status.

A real stack (uvicorn, a worker and the forecaster, as `make run` starts them) on a private
port and Redis db, deterministic generation at a modest budget; `python -m scripts.fuzz`
runs the same with every phase and a larger budget.
"""

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from app.core.settings import Settings
from scripts.stack import Stack
from tests.fixtures.redis import redis_url_for_tests

ROOT = Path(__file__).resolve().parent.parent
CHECKS = "not_a_server_error,response_schema_conformance"


def schemathesis_command(
    url: str, *, max_examples: int, phases: str, seed: int | None
) -> list[str]:
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        url,
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--phases",
        phases,
        # The SSE stream never ends by design; tests/alerts/test_sse.py covers it.
        "--exclude-path",
        "/v1/alerts/stream",
        "--request-timeout",
        "20",
    ]
    return command + (["--seed", str(seed)] if seed is not None else ["--generation-deterministic"])


@pytest.mark.skipif(
    not Path(sys.executable).with_name("st").exists() or shutil.which("redis-server") is None,
    reason="needs schemathesis (make install) and redis-server",
)
async def test_the_api_answers_its_own_schema_without_server_errors(
    settings: Settings, tmp_path: Path
) -> None:
    # A db of its own next to the tests' (the stack's worker drains the whole stream there).
    base, db = redis_url_for_tests().rsplit("/", 1)
    redis_url = f"{base}/{(int(db) - 2) % 16}"
    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": redis_url,
        "ALLOW_VOLATILE_QUEUE": "true",
        "LOG_LEVEL": "WARNING",
    }
    async with Stack(tmp_path, env) as stack:
        # GET /v1/forecast proxies the forecaster: its answers are checked through the API.
        forecaster = stack.forecaster_child()
        await stack.start_http(forecaster, seconds=120)
        api = stack.api_child(env={"FORECAST_URL": f"http://127.0.0.1:{forecaster.port}"})
        await stack.start_http(api)
        stack.worker_child("fuzz-worker").start()
        command = schemathesis_command(
            f"http://127.0.0.1:{api.port}/openapi.json",
            max_examples=int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "12")),
            phases=os.environ.get("SCHEMATHESIS_PHASES", "examples,fuzzing"),
            seed=int(os.environ["SCHEMATHESIS_SEED"])
            if "SCHEMATHESIS_SEED" in os.environ
            else None,
        )
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(
            process.communicate(), timeout=float(os.environ.get("SCHEMATHESIS_TIMEOUT_S", "300"))
        )
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-6000:]
    assert " passed" in report and "generated" in report, report[-2000:]
