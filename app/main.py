"""The API application: `uvicorn app.main:app`."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import httpx
from fastapi import Depends, FastAPI
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from app.alerts import routes as alerts
from app.alerts.fanout import AlertFanout
from app.alerts.state import AlertStream
from app.auth.service import create_tenants
from app.core.database import close_pool, create_pool
from app.core.durability import Durability, probe_masters
from app.core.errors import install_handlers, queue_unavailable
from app.core.openapi import install_openapi
from app.core.params import check_request_params
from app.core.redis import Primaries, as_redis, create_cluster, create_redis, initialize
from app.core.replica import create_read_pool
from app.core.settings import Settings, get_settings
from app.core.shards import all_shards
from app.core.streams import EventStream
from app.fleet import routes as fleet
from app.forecasts import routes as forecasts
from app.forecasts.client import create_forecast_client
from app.generator import routes as generator
from app.health import routes as health
from app.ingest import lean
from app.ingest import routes as ingest
from app.ingest.admission import Admission, DurabilityGate
from app.ingest.backpressure import BacklogGate, ShardedBacklog
from app.ingest.cluster import ShardedEnqueuer
from app.ingest.enqueue import Enqueuer
from app.ingest.group import Enqueue, GroupCommit
from app.ingest.rate import IngestRate
from app.ingest.ratelimit import TenantLimiter
from app.reads import routes as reads
from app.reads.cache import ReadCache
from app.ui import routes as ui
from app.ui.static import Frontend, first_segments, spa_fallback


class App(FastAPI):
    """FastAPI, with the ingest routes answered ahead of it (app/ingest/lean.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        if lean.handles(scope) and getattr(state, "settings", None) and state.settings.lean_ingest:
            await lean.serve(state, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _backlog_gate(settings: Settings, stream: EventStream, label: str | None = None) -> BacklogGate:
    return BacklogGate(
        stream,
        max_entries=settings.backlog_max_entries,
        max_age_s=settings.backlog_max_age_s,
        interval_s=settings.backlog_check_interval_s,
        retry_after_s=settings.retry_after_s,
        label=label,
    )


def _durability_gate(
    settings: Settings,
    redis: Redis,
    prober: Callable[[], Awaitable[Durability]] | None = None,
) -> DurabilityGate:
    return DurabilityGate(
        redis,
        required=settings.required_durability,
        allow_volatile=settings.allow_volatile_queue,
        interval_s=settings.durability_check_interval_s,
        retry_after_s=settings.retry_after_s,
        prober=prober,
    )


def _cluster_queue(
    app: FastAPI, settings: Settings
) -> tuple[ShardedEnqueuer, ShardedBacklog, DurabilityGate]:
    """The ingest queue on Redis Cluster (REDIS_CLUSTER_URL): one stream per shard, each
    with its backlog gate; durability is the weakest master's."""
    cluster = create_cluster(settings)
    app.state.redis = as_redis(cluster)
    app.state.cluster = cluster
    app.state.primaries = primaries = Primaries(cluster)
    shards = all_shards(settings)
    app.state.streams = [EventStream(app.state.redis, s.stream, settings.group) for s in shards]
    backlog = ShardedBacklog(
        [
            _backlog_gate(settings, stream, shard.label)
            for shard, stream in zip(shards, app.state.streams, strict=True)
        ]
    )
    replicated = settings.required_durability == "replicated"
    enqueuer = ShardedEnqueuer(
        cluster,
        primaries,
        shards,
        backlog=backlog,
        replica_wait_ms=settings.replica_wait_ms if replicated else None,
        retry_after_s=settings.retry_after_s,
    )

    async def weakest() -> Durability:
        return await probe_masters(await primaries.masters(), replicated=replicated)

    return enqueuer, backlog, _durability_gate(settings, app.state.redis, weakest)


def create_app(
    settings: Settings | None = None, *, forecast_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The API; `forecast_transport` stands in for the network to the forecaster (tests)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.pool = await create_pool(settings)
        # The read routes' pool: the replica at READ_DATABASE_URL when set (else the primary).
        app.state.read_pool = await create_read_pool(
            settings, app.state.pool, application_name="telemetry-api"
        )
        app.state.read_pool.start()
        replicated = settings.required_durability == "replicated"
        enqueuer: Enqueue
        backlog: BacklogGate | ShardedBacklog
        if settings.redis_cluster_url:
            enqueuer, backlog, durability = _cluster_queue(app, settings)
            await initialize(app.state.cluster)
        else:
            app.state.redis = create_redis(settings)
            app.state.stream = EventStream(app.state.redis, settings.stream, settings.group)
            app.state.streams = [app.state.stream]
            enqueuer = Enqueuer(
                app.state.redis,
                settings.stream,
                settings.dedupe_prefix,
                replica_wait_ms=settings.replica_wait_ms if replicated else None,
                retry_after_s=settings.retry_after_s,
            )
            backlog = _backlog_gate(settings, app.state.stream)
            durability = _durability_gate(settings, app.state.redis)
        app.state.enqueuer = enqueuer
        app.state.group_commit = GroupCommit(
            enqueuer,
            window_s=settings.group_window_ms / 1000,
            max_events=settings.group_max_events,
            dedupe_window_s=settings.dedupe_window_s,
        )
        limiter = TenantLimiter(settings.tenant_rate_eps, settings.tenant_burst)
        app.state.gate = Admission(durability, backlog, limiter)
        app.state.tenants = create_tenants(settings, app.state.pool)
        with suppress(RedisError, OSError):
            # Read at start so the level is logged (and a refusal warned) before traffic.
            await durability.current()
        # One read cache per pool: each follows the refresher as its own pool shows it.
        app.state.caches = {
            source: ReadCache(
                settings.cache_max_entries,
                ttl_recent_s=settings.cache_ttl_recent_s,
                ttl_closed_s=settings.cache_ttl_closed_s,
                sync_interval_s=settings.cache_sync_interval_s,
                lag=app.state.read_pool.lag_s if source == "replica" else lambda: 0.0,
            )
            for source in ("primary", "replica")
        }
        app.state.cache = app.state.caches["primary"]
        # Ingest answers 503 until Redis is back; the workers create the group too.
        try:
            for stream in app.state.streams:
                await stream.ensure_group()
        except RedisError as error:
            if not queue_unavailable(error):
                raise
        app.state.alert_stream = AlertStream(
            app.state.redis,
            settings.alert_stream,
            settings.alert_channel,
            settings.alert_stream_maxlen,
            settings.alert_state_ttl_s,
        )
        # One alert subscription per process, shared by every stream client.
        app.state.alert_fanout = AlertFanout(
            app.state.redis, settings.alert_channel, settings.alert_sse_queue
        )
        app.state.alert_fanout.start()
        app.state.forecasts = create_forecast_client(settings, forecast_transport)
        app.state.ingest_rate = IngestRate(app.state.redis, settings.ingest_rate_prefix)
        stop = asyncio.Event()
        rate_flush = asyncio.create_task(
            app.state.ingest_rate.run(stop, settings.ingest_rate_flush_s), name="ingest-rate"
        )
        try:
            yield
        finally:
            await app.state.group_commit.close()
            await app.state.alert_fanout.stop()
            stop.set()
            await rate_flush
            await app.state.forecasts.aclose()
            await app.state.redis.aclose()
            if settings.redis_cluster_url:
                await app.state.primaries.aclose()
            await app.state.read_pool.close()
            await close_pool(app.state.pool)

    app = App(
        title="Telemetry",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(check_request_params)],
    )
    routers = [health.router, ingest.router, reads.router, alerts.router, generator.router,
               fleet.router, forecasts.router, ui.router]  # fmt: skip
    for router in routers:
        app.include_router(router)
    # `/` and `/assets/` are ui routes; unmatched front-end paths reach index.html by the 404
    # handler, never under a path an API route or the docs start with.
    paths = [getattr(route, "path", "") for router in routers for route in router.routes]
    docs = [app.openapi_url or "", app.docs_url or "", app.redoc_url or ""]
    app.state.frontend = Frontend(settings.web_dist, first_segments(paths + docs))
    install_handlers(app, settings.retry_after_s)
    app.add_exception_handler(404, spa_fallback(app.state.frontend))
    install_openapi(app, settings, [ingest.openapi_patch])
    return app


app = create_app()
