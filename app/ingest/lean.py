"""The ingest routes on a lean path: plain ASGI in front of FastAPI's routing.

POST /v1/events and /v1/events/batch are answered here by the same functions the FastAPI
routes call (app/ingest/service.py), with the same validation, tenant, admission and error
bodies, but without the per-request work that does not depend on the request: route
matching over every route, dependency resolution, and the exception-handler lookup. The
FastAPI routes stay, for the OpenAPI document and with LEAN_INGEST=false.
"""

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import TelemetryError, render_error
from app.core.responses import json_response
from app.core.tenancy import tenant_of
from app.ingest.service import answer_batch, answer_single

_ANSWERS = {"/v1/events": answer_single, "/v1/events/batch": answer_batch}


class LeanIngest:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = _ANSWERS.get(scope["path"]) if scope["type"] == "http" else None
        state = scope["app"].state if answer is not None else None
        if answer is None or state is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        settings = state.settings
        if not settings.lean_ingest:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            tenant = tenant_of(request.headers, settings)
            response = await answer(request, settings, state.group_commit, state.gate, tenant)
        except TelemetryError as error:
            response = json_response(error.body(), error.status, error.headers)
        except Exception as error:
            rendered = render_error(error, settings.retry_after_s, scope["path"])
            if rendered is None:
                raise
            response = rendered
        await response(scope, receive, send)
