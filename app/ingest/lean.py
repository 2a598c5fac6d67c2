"""The ingest routes on a lean path: plain ASGI ahead of FastAPI.

POST /v1/events and /v1/events/batch are answered here by the same functions the FastAPI
routes call (app/ingest/service.py), with the same validation, tenant, admission and error
bodies, but without the per-request work that does not depend on the request: FastAPI's and
Starlette's middleware layers, route matching over every route, dependency resolution,
request and response objects. The body comes from the ASGI messages and the answer goes out
as two pre-built messages. The FastAPI routes stay, for the OpenAPI document and with
LEAN_INGEST=false.
"""

import logging
from typing import Any

from starlette.types import Receive, Scope, Send

from app.core.errors import Internal, TelemetryError, render_error
from app.core.responses import dumps
from app.ingest.body import read_asgi_body
from app.ingest.service import Answer, answer_batch, answer_single

log = logging.getLogger("app.ingest")

PATHS = ("/v1/events", "/v1/events/batch")
_JSON = (b"content-type", b"application/json")


def handles(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["path"] in PATHS and scope["method"] == "POST"


async def serve(state: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ingest request from the app's state (its lifespan's resources)."""
    settings = state.settings
    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
    extra: dict[str, str] = {}
    try:
        identity = await state.tenants.identify(headers)
        body = await read_asgi_body(receive, headers.get("content-length"), settings.max_body_bytes)
        if scope["path"] == PATHS[0]:
            answer = await answer_single(body, settings, state.group_commit, state.gate, identity)
        else:
            content_type = headers.get("content-type", "application/json")
            answer = await answer_batch(
                body, content_type, settings, state.group_commit, state.gate, identity
            )
    except TelemetryError as error:
        answer, extra = Answer(error.status, dumps(error.body())), error.headers
    except Exception as error:
        rendered = render_error(error, settings.retry_after_s, scope["path"])
        if rendered is None:
            log.exception("ingest failed on the lean path")
            answer = Answer(500, dumps(Internal("internal error").body()))
        else:
            answer = Answer(rendered.status_code, bytes(rendered.body))
            extra = {k: v for k, v in rendered.headers.items() if k == "retry-after"}
    head = [_JSON, (b"content-length", str(len(answer.body)).encode())]
    head += [(key.lower().encode(), value.encode()) for key, value in extra.items()]
    await send({"type": "http.response.start", "status": answer.status, "headers": head})
    await send({"type": "http.response.body", "body": answer.body})
