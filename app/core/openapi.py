"""The published OpenAPI document, completed from the running app's settings.

Bounds that come from settings (limits, the event contract's lengths and counts) are filled
in when the document is first asked for, from the same values the validators use, so the
schema says what this deployment accepts.
"""

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.core.settings import Settings

Patch = Callable[[dict[str, Any], Settings], None]


def operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in schema.get("paths", {}).values() for op in path.values()]


def limit_parameters(schema: dict[str, Any], settings: Settings) -> None:
    """`limit` and `size` take 1 to READ_MAX_LIMIT wherever they appear with no bounds of
    their own."""
    for operation in operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["name"] in ("limit", "size"):
                target = parameter["schema"]
                for option in target.get("anyOf", [target]):
                    if option.get("type") == "integer":
                        option.setdefault("minimum", 1)
                        option.setdefault("maximum", settings.read_max_limit)


def install_openapi(app: FastAPI, settings: Settings, patches: Sequence[Patch]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for patch in (limit_parameters, *patches):
                patch(schema, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
