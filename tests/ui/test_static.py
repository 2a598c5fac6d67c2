"""The built front end at `/`: index.html revalidated, hashed assets immutable, unknown
front-end paths answered with index.html, and no API route shadowed."""

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.core.settings import Settings
from app.main import create_app

INDEX = "<!doctype html><div id=root></div><script src=/assets/index-Abc123.js></script>"
IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-Abc123.js").write_text("console.log('hi')")
    (root / "assets" / "index-Def456.css").write_text("body{}")
    (root / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside the build")
    return root


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http


@pytest.fixture
async def web(
    settings: Settings, dist: Path, redis: Redis, db: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client(settings.model_copy(update={"web_dist": dist})):
        yield http


def _is_index(response: httpx.Response) -> bool:
    return (
        response.status_code == 200
        and response.text == INDEX
        and response.headers["content-type"].startswith("text/html")
        and response.headers["cache-control"] == "no-cache"
    )


async def test_index_and_front_end_paths_are_revalidated(web: httpx.AsyncClient) -> None:
    for path in ("/", "/devices", "/devices/pump-1", "/pipeline?x=1", "/a/b/c.html"):
        assert _is_index(await web.get(path)), path


async def test_hashed_assets_are_immutable(web: httpx.AsyncClient) -> None:
    script = await web.get("/assets/index-Abc123.js")
    assert script.status_code == 200 and script.text == "console.log('hi')"
    assert script.headers["cache-control"] == IMMUTABLE
    assert "javascript" in script.headers["content-type"]
    style = await web.get("/assets/index-Def456.css")
    assert style.headers["cache-control"] == IMMUTABLE and "css" in style.headers["content-type"]


async def test_head_answers_the_headers_of_get_without_a_body(web: httpx.AsyncClient) -> None:
    for path, cache in (("/", "no-cache"), ("/assets/index-Abc123.js", IMMUTABLE)):
        head = await web.head(path)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["cache-control"] == cache, path


async def test_top_level_files_are_served_revalidated(web: httpx.AsyncClient) -> None:
    icon = await web.get("/favicon.svg")
    assert icon.status_code == 200 and icon.text == "<svg/>"
    assert icon.headers["cache-control"] == "no-cache"


async def test_a_missing_asset_is_a_json_404_never_index(web: httpx.AsyncClient) -> None:
    for path in ("/assets/index-Old999.js", "/assets/",
                 "/assets/%2e%2e/%2e%2e/secret.txt", "/assets/..%2F..%2Fsecret.txt"):  # fmt: skip
        response = await web.get(path)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == "application/json"
        assert "outside the build" not in response.text


async def test_nothing_outside_the_build_is_served(web: httpx.AsyncClient) -> None:
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2Fsecret.txt"):
        response = await web.get(path)
        assert "outside the build" not in response.text, path


async def test_api_routes_docs_and_health_are_not_shadowed(web: httpx.AsyncClient) -> None:
    assert (await web.get("/healthz")).json() == {"status": "ok"}
    assert (await web.get("/readyz")).status_code == 200
    assert (await web.get("/metrics")).text.startswith("# HELP")
    assert (await web.get("/openapi.json")).json()["info"]["title"] == "Telemetry"
    assert "swagger" in (await web.get("/docs")).text.lower()
    assert "redoc" in (await web.get("/redoc")).text.lower()
    status = await web.get("/v1/devices", headers={"X-Tenant-ID": "t"})
    assert status.json() == {"devices": [], "truncated": False}
    # A known path with another method keeps its 405; unknown API paths keep their JSON 404.
    assert (await web.get("/v1/events/batch")).status_code == 405
    for path in ("/v1/nope", "/v1/", "/v1", "/sites/s1", "/sensors/x", "/docs/x"):
        response = await web.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not Found"}
    assert (await web.post("/nope")).status_code == 404
    assert (await web.post("/nope")).json() == {"detail": "Not Found"}


async def test_a_browser_navigating_under_a_legacy_api_path_gets_the_page(
    web: httpx.AsyncClient,
) -> None:
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    assert _is_index(await web.get("/sites/s1", headers=html))
    assert (await web.get("/v1/nope", headers=html)).status_code == 404


async def test_the_lean_ingest_path_is_untouched(web: httpx.AsyncClient) -> None:
    event = {"event_id": "e1", "device_id": "d1", "ts": "2025-06-01T10:00:00Z",
             "metrics": {"temp": 1.0}}  # fmt: skip
    response = await web.post("/v1/events", json=event)
    assert response.status_code == 202 and response.json()["status"] == "accepted"


async def test_without_a_build_the_root_says_how_to_make_one(
    settings: Settings, tmp_path: Path, redis: Redis, db: asyncpg.Connection
) -> None:
    absent = settings.model_copy(update={"web_dist": tmp_path / "nowhere"})
    async for http in _client(absent):
        for path in ("/", "/devices/d1"):
            response = await http.get(path)
            assert response.status_code == 200, path
            assert "make install" in response.text
            assert response.headers["content-type"].startswith("text/html")
        assert (await http.get("/assets/index-Abc123.js")).status_code == 404
        assert (await http.get("/healthz")).status_code == 200
