"""The built front end (WEB_DIST, Vite's `web/dist`), served by the API at `/`.

`/` and any unknown GET path outside the API answer `index.html` (the front end routes in
the browser), revalidated on every load (`no-cache`): never under `/v1`, and under the
other API paths (`/sites`, `/sensors`, `/docs`...) only for a browser's navigation. Vite's
content-hashed files under `/assets/` are cached for a year, immutable; other files at the
top of the build (favicon, robots.txt) are served as they are, revalidated. Without a
build, `/` answers a short page saying how to make one. Nothing here shadows a route: the
fallback answers only what no route matched (a wrong method still gets its 405).
"""

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from fastapi import Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException

from app.core.errors import NotFound

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Telemetry</title></head>
<body><h1>Telemetry</h1>
<p>The dashboard is not built here: run <code>make install</code> (it builds
<code>web/dist</code>), or set <code>WEB_DIST</code> to a build.
The API is up: see <a href="/docs">/docs</a>.</p></body></html>
"""


def _inside(root: Path, path: str) -> Path | None:
    """The file `path` names under root, or None (absent, a directory, or outside root)."""
    if not path or "\\" in path:
        return None
    base = root.resolve()
    candidate = (base / path).resolve()
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate


class Frontend:
    def __init__(self, dist: Path, api: frozenset[str]) -> None:
        self.dist = dist
        # The first path segments of the API's routes (v1, sites, docs, metrics...).
        self.api = api

    def page(self, path: str = "") -> Response:
        """A top-level file of the build, else index.html, else the not-built page."""
        headers = {"Cache-Control": REVALIDATE}
        top = _inside(self.dist, path) if path and "/" not in path.strip("/") else None
        if top is not None and top.name != "index.html":
            return FileResponse(top, headers=headers)
        index = _inside(self.dist, "index.html")
        if index is None:
            return HTMLResponse(NOT_BUILT, headers=headers)
        return FileResponse(index, media_type="text/html", headers=headers)

    def asset(self, path: str) -> Response:
        """A hashed asset of the build, cached for good; 404 when there is no such file."""
        found = _inside(self.dist / "assets", path)
        if found is None:
            raise NotFound("no such asset in the dashboard build", field="path")
        return FileResponse(found, headers={"Cache-Control": IMMUTABLE})


def first_segments(paths: Iterable[str]) -> frozenset[str]:
    """The first segment of each path but `/`: `/v1/devices` -> `v1`."""
    return frozenset(first for p in paths if (first := p.strip("/").split("/", 1)[0]))


def wants_page(request: Request, api: frozenset[str]) -> bool:
    """Whether an unmatched request is the front end's: a GET outside /v1, and outside
    the other API paths unless a browser navigates there (it accepts text/html)."""
    if request.method not in ("GET", "HEAD"):
        return False
    first = request.url.path.strip("/").split("/", 1)[0]
    if first == "v1":
        return False
    return first not in api or "text/html" in request.headers.get("accept", "")


def spa_fallback(frontend: Frontend) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The 404 handler: the front end's page where wants_page, else the usual 404."""

    async def not_found(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if wants_page(request, frontend.api):
            return frontend.page(request.url.path.strip("/"))
        return await http_exception_handler(request, error)

    return not_found
