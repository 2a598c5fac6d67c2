"""`python -m scripts.generate --rate N --duration SECONDS --ground-truth FILE`: simulated sensors.

Thousands of sensors across sites and tenants (meters with a daily load cycle, solar
inverters following the sun, moving trackers), each emitting its readings in timestamp
order. The seed-000 profile: a sustained rate N, bursts of 10x for 10 s every 60 s, 1-3 %
of events held back by a bounded lateness (out of order), 0.5-1 % sent twice (duplicates),
and a few corrections (the same device and ts re-sent with a new id and new values) so the
checker proves latest-write-wins as well as dedupe.

Seed 001's variables work as they are: INGEST_URL, DEVICES, BURSTS, BURST_SIZE,
BURST_INTERVAL_MS, DUPLICATE_RATE, OUT_OF_ORDER_RATE, MAX_OUT_OF_ORDER_MS, BASE_LAT,
BASE_LON (BURSTS without --rate selects the seed-001 burst profile).

Every distinct event the API acknowledged goes to the ground-truth file (NDJSON, gzip when
the name ends in .gz), so `python -m scripts.verify` can prove what must be stored. 429 and
503 are retried after Retry-After; transport errors with backoff. The generator publishes
its profile to GET/PUT /v1/generator/config and follows changes made there.

Stopping is bounded, whatever the API does (refuses connections, hangs, answers 503 for
ever). At the end of --duration production stops and what is made is still delivered for
at most --grace seconds (30 by default): a retry that would end past it is not made, a
request still in flight then is cancelled. Unanswered batches are written to the ground
truth as unacknowledged, events never sent are counted as unsent, and the summary says
both. SIGINT or SIGTERM ends production at once and allows the smaller of --grace and
--stop-grace (5 s by default); a second one gives up at once. The ground truth is flushed
every second and closed (with its footer) on every way out.
"""

import argparse
import asyncio
import gzip
import heapq
import itertools
import math
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import httpx
import orjson
from pydantic import ValidationError
from tqdm import tqdm

from app.generator.config import GeneratorConfig

KINDS = ("meter", "solar", "tracker")
KIND_WEIGHTS = (0.6, 0.25, 0.15)
TICK_S = 0.05
MAX_EMIT_PER_TICK = 20_000
MIN_BUFFER = 2000
INGEST_SUFFIXES = ("/v1/events/batch", "/v1/events", "/events/batch", "/events", "/event")
CONFIG_PATH = "/v1/generator/config"
# The config PUT before the run must not hold the start up when the API hangs.
CONFIG_TIMEOUT_S = 2.0

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True, eq=False)
class Sensor:
    tenant: str
    device_id: str
    kind: str
    site_id: str
    tags: list[str]
    lat: float
    lon: float
    base_w: float
    heading: float = 0.0
    speed: float = 0.0
    cloud: float = 1.0
    last_ts: int = 0


@dataclass(slots=True, eq=False)
class Emitted:
    """One event as sent; a duplicate re-send is the same object sent again."""

    sensor: Sensor
    ts: int
    event_id: str
    metrics: dict[str, float]
    body: dict[str, Any]
    correct: bool = False
    invalid: bool = False
    confirmed: bool = False


@dataclass(slots=True)
class Counts:
    created: int = 0
    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    retried_429: int = 0
    retried_503: int = 0
    errors: int = 0
    requests: int = 0
    late: int = 0
    resent: int = 0
    corrections: int = 0
    invalid: int = 0
    unexpected_rejects: int = 0
    unconfirmed: int = 0
    confirmed: int = 0
    shed: int = 0
    unsent: int = 0

    def line(self) -> str:
        return (
            f"sent={self.sent} accepted={self.accepted} duplicate={self.duplicate} "
            f"rejected={self.rejected} 429-retried={self.retried_429} "
            f"503-retried={self.retried_503} errors={self.errors}"
        )


@dataclass(slots=True)
class Options:
    """What does not change while a generator runs (the profile lives in GeneratorConfig)."""

    url: str = "http://127.0.0.1:8000"
    duration_s: float = 60.0
    devices: int = 2000
    tenants: int = 2
    sites: int = 20
    concurrency: int = 8
    seed: int | None = None
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    base_lat: float = 37.7749
    base_lon: float = -122.4194
    invalid_rate: float = 0.0
    give_up_s: float = 120.0
    # After the end of the run: the bound on delivering the rest. After a signal the smaller
    # of both: an operator's Ctrl-C or an orchestrator's SIGTERM wants it gone in seconds.
    grace_s: float = 30.0
    stop_grace_s: float = 5.0
    follow: bool = True
    control_tenant: str = "default"
    config_poll_s: float = 1.0
    linger_ms: float = 100.0
    max_lag_s: float = 30.0
    first_burst_at_s: float | None = None
    # Seed 001's schedule: `bursts` bursts of `burst_size` events, `burst_interval_ms` apart.
    bursts: int | None = None
    burst_size: int = 100
    burst_interval_ms: int = 1000
    stats_path: Path | None = None
    quiet: bool = False


def base_url(url: str) -> str:
    """The API root from INGEST_URL, which may name an ingest path as seed 001 does."""
    url = url.rstrip("/")
    for suffix in INGEST_SUFFIXES:
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def tenant_names(count: int) -> list[str]:
    return ["default", *(f"tenant-{i + 1}" for i in range(1, count))]


class Signals:
    """Readings that look like the field: daily load cycles, the sun, moving vehicles."""

    def __init__(self, rng: random.Random, base_lat: float, base_lon: float) -> None:
        self.rng = rng
        self.base_lat = base_lat
        self.base_lon = base_lon

    def sensors(self, run_id: str, devices: int, tenants: list[str], sites: int) -> list[Sensor]:
        rng = self.rng
        out: list[Sensor] = []
        for index in range(devices):
            kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
            tenant = tenants[index % len(tenants)]
            site = f"site-{rng.randrange(sites):03d}"
            lat = self.base_lat + rng.uniform(-0.2, 0.2)
            lon = self.base_lon + rng.uniform(-0.2, 0.2)
            base_w = {"meter": rng.uniform(300, 8000), "solar": rng.uniform(2000, 12000)}.get(
                kind, 0.0
            )
            out.append(
                Sensor(
                    tenant=tenant,
                    device_id=f"{run_id}-{kind}-{index:05d}",
                    kind=kind,
                    site_id=site,
                    tags=[f"kind:{kind}", f"fw:v{rng.randint(1, 3)}"],
                    lat=lat,
                    lon=lon,
                    base_w=base_w,
                    heading=rng.uniform(0, 2 * math.pi),
                    speed=rng.uniform(0, 60),
                    cloud=rng.uniform(0.5, 1.0),
                )
            )
        return out

    def reading(self, sensor: Sensor, ts_ms: int) -> dict[str, float]:
        gauss = self.rng.gauss
        # Local solar time from the longitude: the daily cycle follows the site's sun.
        hour = (ts_ms / 3_600_000.0 + sensor.lon / 15.0) % 24.0
        day = 2 * math.pi * hour / 24.0
        ambient = 16 + 7 * math.sin(day - 2 * math.pi * 9 / 24) + gauss(0, 0.3)
        if sensor.kind == "meter":
            load = 0.55 + 0.3 * math.sin(day - 2 * math.pi * 7 / 24)
            load += 0.15 * math.sin(2 * day - 2 * math.pi * 14 / 24)
            power = max(0.0, sensor.base_w * load * (1 + gauss(0, 0.04)))
            voltage = 230 + 3 * math.sin(day) - 2 * power / sensor.base_w + gauss(0, 0.6)
            return {
                "power_w": round(power, 1),
                "voltage_v": round(voltage, 2),
                "current_a": round(power / voltage, 3),
                "temperature_c": round(ambient, 2),
            }
        if sensor.kind == "solar":
            sensor.cloud = min(1.0, max(0.2, sensor.cloud + gauss(0, 0.02)))
            elevation = max(0.0, math.sin(math.pi * (hour - 6) / 12)) if 6 < hour < 18 else 0.0
            irradiance = 1000 * elevation * sensor.cloud
            power = max(0.0, sensor.base_w * irradiance / 1000 * (1 + gauss(0, 0.02)))
            voltage = 380 + 20 * elevation + gauss(0, 1.0) if power > 1 else 0.0
            return {
                "power_w": round(power, 1),
                "voltage_v": round(voltage, 2),
                "current_a": round(power / voltage, 3) if voltage else 0.0,
                "irradiance_wm2": round(irradiance, 1),
                "temperature_c": round(ambient + irradiance * 0.025, 2),
            }
        # A vehicle: a random walk of heading and speed, turned back towards its depot.
        seconds = (ts_ms - sensor.last_ts) / 1000 if sensor.last_ts else 1.0
        sensor.speed = min(90.0, max(0.0, sensor.speed + gauss(0, 3)))
        distance = sensor.speed / 3.6 * min(seconds, 60.0)
        far = math.hypot(sensor.lat - self.base_lat, sensor.lon - self.base_lon) > 0.3
        if far:
            sensor.heading = math.atan2(self.base_lon - sensor.lon, self.base_lat - sensor.lat)
        sensor.heading += gauss(0, 0.15)
        sensor.lat += distance * math.cos(sensor.heading) / 111_320
        sensor.lon += (
            distance
            * math.sin(sensor.heading)
            / (111_320 * max(0.1, math.cos(math.radians(sensor.lat))))
        )
        return {
            "latitude": round(sensor.lat, 6),
            "longitude": round(sensor.lon, 6),
            "speed_kmh": round(sensor.speed, 1),
            "temperature_c": round(ambient, 2),
        }


def event_body(sensor: Sensor, ts: int, event_id: str, metrics: dict[str, float]) -> dict[str, Any]:
    """The wire shape varies by kind, as different fleets send: seed 000, 004 and 001."""
    common = {"event_id": event_id, "tenant_id": sensor.tenant, "tags": sensor.tags}
    if sensor.kind == "meter":
        return {"sensor_id": sensor.device_id, "ts": ts, "site_id": sensor.site_id, **common} | (
            metrics
        )
    if sensor.kind == "solar":
        return {
            "device_id": sensor.device_id,
            "ts": ts,
            "site_id": sensor.site_id,
            "metrics": metrics,
            **common,
        }
    return {"deviceId": sensor.device_id, "ts": ts, "site_id": sensor.site_id, **common} | metrics


class TruthWriter:
    """The ground truth: a header naming the run's devices, then one line per acknowledged
    event, in acknowledgement order (so a correction's line comes after the original's)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        # Open for the whole run and closed by close(): a context manager cannot span it.
        self._file: IO[bytes] = (
            cast(IO[bytes], gzip.open(path, "wb", compresslevel=1))  # noqa: SIM115
            if path.suffix == ".gz"
            else path.open("wb")
        )
        self._file.write(orjson.dumps({"truth": 1, **header}) + b"\n")

    def write(self, event: Emitted, unconfirmed: bool = False) -> None:
        line: dict[str, Any] = {
            "t": event.sensor.tenant,
            "d": event.sensor.device_id,
            "ts": event.ts,
            "id": event.event_id,
            "s": event.sensor.site_id,
            "m": event.metrics,
            "g": event.sensor.tags,
        }
        if unconfirmed:
            line["u"] = 1
        self._file.write(orjson.dumps(line) + b"\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self, footer: dict[str, Any]) -> None:
        self._file.write(orjson.dumps({"end": 1, **footer}) + b"\n")
        self._file.close()


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Generator:
    def __init__(
        self,
        options: Options,
        config: GeneratorConfig,
        client: httpx.AsyncClient,
        truth: TruthWriter | None = None,
        *,
        backoff: Sleep = asyncio.sleep,
    ) -> None:
        self.options = options
        self.config = config
        self.client = client
        self.truth = truth
        self.backoff = backoff
        self.rng = random.Random(options.seed)
        self.signals = Signals(self.rng, options.base_lat, options.base_lon)
        self.tenants = tenant_names(options.tenants)
        self.sensors = self.signals.sensors(
            options.run_id, options.devices, self.tenants, options.sites
        )
        self.counts = Counts()
        self.config_changes = 0
        self.following = options.follow
        self._cursor = itertools.cycle(self.sensors)
        self._held: list[tuple[float, int, Emitted]] = []
        self._held_seq = itertools.count()
        self._outbox: dict[str, list[Emitted]] = {tenant: [] for tenant in self.tenants}
        self._outbox_since: dict[str, float] = {}
        self._queue: asyncio.Queue[tuple[str, list[Emitted]] | None] = asyncio.Queue()
        # Events made but not yet taken by a sender (outbox + queue): bounded by buffer().
        self._buffered = 0
        self._latencies: list[float] = []
        self._started = 0.0
        self._due = 0.0
        self._stats: IO[bytes] | None = None
        self._stopping = False
        # Past this (monotonic) no retry starts and in-flight requests are cancelled; set when
        # production ends. A second stop() sets _abort: give everything up now.
        self._end_by = math.inf
        self._abort = asyncio.Event()
        self.stopped_by: str | None = None

    # Schedule -------------------------------------------------------------------------

    def in_burst(self, elapsed: float) -> bool:
        config = self.config
        if config.burst_seconds <= 0 or config.burst_multiplier == 1:
            return False
        first = self.options.first_burst_at_s
        if first is None:
            first = config.burst_every_s - config.burst_seconds
        if elapsed < first:
            return False
        return (elapsed - first) % config.burst_every_s < config.burst_seconds

    def target_rate(self, elapsed: float) -> float:
        if self.config.paused:
            return 0.0
        rate = self.config.rate
        return rate * self.config.burst_multiplier if self.in_burst(elapsed) else rate

    def _seed001_due(self, elapsed: float) -> int:
        assert self.options.bursts is not None
        done = min(self.options.bursts, int(elapsed * 1000 // self.options.burst_interval_ms) + 1)
        return done * self.options.burst_size

    def stop(self, reason: str = "stop") -> None:
        """Stop producing; what was produced is still delivered within the stop grace.
        Called again (a second Ctrl-C), give up what is left at once."""
        if self._stopping:
            self._abort.set()
            return
        self._stopping = True
        self.stopped_by = reason
        self._end_by = min(self._end_by, time.monotonic() + self.stop_grace())

    def stop_grace(self) -> float:
        return min(self.options.grace_s, self.options.stop_grace_s)

    def _finished(self, elapsed: float) -> bool:
        if self._stopping:
            return True
        if self.options.bursts is not None:
            return self.counts.created >= self.options.bursts * self.options.burst_size
        return elapsed >= self.options.duration_s

    # Emission -------------------------------------------------------------------------

    def emit(self, now: float) -> Emitted:
        """The next reading of the next sensor, in that sensor's timestamp order."""
        sensor = next(self._cursor)
        ts = max(time.time_ns() // 1_000_000, sensor.last_ts + 1)
        metrics = self.signals.reading(sensor, ts)
        sensor.last_ts = ts
        event_id = f"{sensor.device_id}-{ts}"
        event = Emitted(sensor, ts, event_id, metrics, event_body(sensor, ts, event_id, metrics))
        self.counts.created += 1
        rng, config = self.rng, self.config
        if self.options.invalid_rate and rng.random() < self.options.invalid_rate:
            event.invalid = True
            event.body["ts"] = "not a time"
            self.counts.invalid += 1
        elif config.correction_rate and rng.random() < config.correction_rate:
            event.correct = True
        if config.out_of_order_rate and rng.random() < config.out_of_order_rate:
            # Held back, so it reaches the API after newer readings of its sensor.
            self.counts.late += 1
            self._hold(now + rng.uniform(0, config.max_out_of_order_ms) / 1000, event)
        else:
            self._enqueue(event, now)
        # A malformed event is not resent: each one is rejected exactly once, so the
        # rejected count can be checked against the invalid count.
        if config.duplicate_rate and rng.random() < config.duplicate_rate and not event.invalid:
            self.counts.resent += 1
            self._hold(now + rng.uniform(0, 2.0), event)
        return event

    def correction(self, original: Emitted) -> Emitted:
        sensor = original.sensor
        metrics = {name: round(value * 1.01 + 0.5, 3) for name, value in original.metrics.items()}
        event_id = original.event_id + "-c"
        self.counts.corrections += 1
        return Emitted(
            sensor,
            original.ts,
            event_id,
            metrics,
            event_body(sensor, original.ts, event_id, metrics),
        )

    def buffer(self) -> int:
        """How many made events may wait for a sender: two batches per sender, and never
        fewer than MIN_BUFFER (with single-event requests two batches are two events)."""
        return max(MIN_BUFFER, 2 * self.options.concurrency * self.config.batch_size)

    def _hold(self, release_at: float, event: Emitted) -> None:
        heapq.heappush(self._held, (release_at, next(self._held_seq), event))

    def _enqueue(self, event: Emitted, now: float) -> None:
        tenant = event.sensor.tenant
        box = self._outbox[tenant]
        if not box:
            self._outbox_since[tenant] = now
        box.append(event)
        self._buffered += 1

    def _release(self, now: float, everything: bool = False) -> None:
        while self._held and (everything or self._held[0][0] <= now):
            self._enqueue(heapq.heappop(self._held)[2], now)

    async def _flush(self, now: float, everything: bool = False) -> None:
        size = self.config.batch_size
        linger = self.options.linger_ms / 1000
        for tenant, box in self._outbox.items():
            while len(box) >= size or (
                box and (everything or now - self._outbox_since[tenant] >= linger)
            ):
                batch, box[:] = box[:size], box[size:]
                self._outbox_since[tenant] = now
                await self._queue.put((tenant, batch))

    async def _produce(self) -> None:
        last = time.monotonic()
        while True:
            now = time.monotonic()
            elapsed = now - self._started
            if self._finished(elapsed):
                break
            await self.tick(now, elapsed, now - last)
            last = now
            await asyncio.sleep(TICK_S)

    async def tick(self, now: float, elapsed: float, seconds: float) -> None:
        """One turn of the producer: make what is due, release what was held, hand batches
        to the senders."""
        if self.options.bursts is not None:
            due = self._seed001_due(elapsed)
        else:
            due = self._advance(self.target_rate(elapsed), seconds)
        # Only what the senders can take: the rest stays due (buffered on the sensors),
        # so a pause or a slow API never leaves a mountain of events in this process.
        room = self.buffer() - self._buffered
        for _ in range(max(0, min(MAX_EMIT_PER_TICK, due - self.counts.created, room))):
            self.emit(now)
        self._release(now)
        await self._flush(now)

    def _advance(self, rate: float, seconds: float) -> int:
        """Events due so far. Sensors buffer what the API could not take yet, up to
        `max_lag_s` of readings; older ones are shed (counted), and a pause forgets the debt."""
        if self.config.paused:
            self._due = float(self.counts.created)
            return self.counts.created
        self._due += rate * seconds
        ceiling = self.counts.created + max(rate, 1.0) * self.options.max_lag_s
        if self._due > ceiling:
            self.counts.shed += int(self._due - ceiling)
            self._due = ceiling
        return int(self._due)

    # Delivery -------------------------------------------------------------------------

    async def _send(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    return
                self._buffered -= len(item[1])
                try:
                    await self.deliver(*item)
                except asyncio.CancelledError:
                    # Cut off at the end of the grace: it may or may not have been stored.
                    self._give_up(item[1])
                    raise
            finally:
                self._queue.task_done()

    async def deliver(self, tenant: str, batch: list[Emitted]) -> None:
        """POST one batch until the API answers for every event in it, or give up."""
        single = len(batch) == 1 and self.config.batch_size == 1
        if single:
            path, body = "/v1/events", orjson.dumps(batch[0].body)
        else:
            path, body = "/v1/events/batch", orjson.dumps([event.body for event in batch])
        headers = {"content-type": "application/json", "x-tenant-id": tenant}
        if time.monotonic() >= self._end_by:
            self._unsent(batch)
            return
        give_up_at = time.monotonic() + self.options.give_up_s
        counts = self.counts
        counts.sent += len(batch)
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = await self.client.post(path, content=body, headers=headers)
            except httpx.TransportError:
                counts.errors += 1
                wait = self.rng.uniform(0, min(5.0, 0.1 * 2**attempt))
            else:
                counts.requests += 1
                status = response.status_code
                if status in (200, 201, 202):
                    self._latencies.append(time.perf_counter() - started)
                    self._account(batch, response.json(), single)
                    return
                if status == 422 and single:
                    self._account(batch, {"status": "rejected"}, single)
                    return
                if status in (429, 503):
                    if status == 429:
                        counts.retried_429 += 1
                    else:
                        counts.retried_503 += 1
                    wait = retry_after(response)
                elif status >= 500:
                    counts.errors += 1
                    wait = self.rng.uniform(0, min(5.0, 0.1 * 2**attempt))
                else:
                    # A request-level refusal (413, 400): nothing in it was enqueued.
                    counts.errors += 1
                    counts.rejected += len(batch)
                    counts.unexpected_rejects += sum(not event.invalid for event in batch)
                    return
            attempt += 1
            # _end_by is read each turn: it moves from infinity to a bound when the run ends.
            if time.monotonic() + wait > min(give_up_at, self._end_by):
                self._give_up(batch)
                return
            await self.backoff(wait)

    def _account(self, batch: list[Emitted], answer: Any, single: bool) -> None:
        if single:
            results = [answer]
        elif isinstance(answer, dict):
            results = answer["results"]
        else:
            results = answer  # the naive baseline answers a bare list
        counts = self.counts
        for event, result in zip(batch, results, strict=True):
            status = result.get("status")
            if status in ("accepted", "stored", "ok"):
                counts.accepted += 1
            elif status == "duplicate":
                counts.duplicate += 1
            else:
                counts.rejected += 1
                if not event.invalid:
                    counts.unexpected_rejects += 1
                continue
            self._confirm(event)

    def _confirm(self, event: Emitted) -> None:
        if event.confirmed:
            return
        event.confirmed = True
        self.counts.confirmed += 1
        if self.truth is not None:
            self.truth.write(event)
        if event.correct:
            # Sent only now that the original is acknowledged, so it enters the stream
            # after it: the correction must be the version that stays.
            self._enqueue(self.correction(event), time.monotonic())

    def _give_up(self, batch: list[Emitted]) -> None:
        for event in batch:
            if not event.confirmed and not event.invalid:
                self.counts.unconfirmed += 1
                if self.truth is not None:
                    self.truth.write(event, unconfirmed=True)

    def _unsent(self, batch: list[Emitted]) -> None:
        """Never sent, so certainly not stored: counted, not written."""
        self.counts.unsent += sum(not e.confirmed and not e.invalid for e in batch)

    def _leftovers(self) -> None:
        """What never reached a sender when the run was cut short."""
        events: dict[int, Emitted] = {}
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                events.update((id(event), event) for event in item[1])
        for box in self._outbox.values():
            events.update((id(event), event) for event in box)
            box.clear()
        events.update((id(event), event) for _, _, event in self._held)
        self._held.clear()
        self._unsent(list(events.values()))

    # Config, progress, stats -----------------------------------------------------------

    async def publish_config(self) -> None:
        """Store this generator's profile on the backend; stop following if it has none."""
        if not self.following:
            return
        try:
            response = await self.client.put(
                CONFIG_PATH,
                content=orjson.dumps(self.config.knobs()),
                headers={
                    "content-type": "application/json",
                    "x-tenant-id": self.options.control_tenant,
                },
                timeout=CONFIG_TIMEOUT_S,
            )
        except httpx.TransportError:
            return
        if response.status_code != 200:
            self.following = False

    async def poll_config(self) -> None:
        try:
            response = await self.client.get(
                CONFIG_PATH, headers={"x-tenant-id": self.options.control_tenant}
            )
        except httpx.TransportError:
            return
        if response.status_code != 200:
            return
        try:
            config = GeneratorConfig.model_validate(response.json())
        except (ValidationError, ValueError):
            return
        if config.knobs() != self.config.knobs():
            self.config = config
            self.config_changes += 1

    async def _follow(self) -> None:
        while self.following:
            await asyncio.sleep(self.options.config_poll_s)
            await self.poll_config()

    def _sample(self, elapsed: float) -> dict[str, Any]:
        latencies, self._latencies = self._latencies, []
        return {
            "t": time.time(),
            "elapsed": round(elapsed, 3),
            "target_rate": self.target_rate(elapsed),
            "in_burst": self.in_burst(elapsed),
            "latency_p50": percentile(latencies, 0.5),
            "latency_p99": percentile(latencies, 0.99),
            "latency_n": len(latencies),
            "queued_batches": self._queue.qsize(),
            "held": len(self._held),
            **asdict(self.counts),
        }

    async def _report(self, bar: tqdm) -> None:
        while True:
            await asyncio.sleep(1.0)
            elapsed = time.monotonic() - self._started
            sample = self._sample(elapsed)
            if self._stats is not None:
                self._stats.write(orjson.dumps(sample) + b"\n")
                self._stats.flush()
            if self.truth is not None:
                self.truth.flush()  # a kill -9 then loses at most a second of lines
            if self.options.bursts is None:
                bar.n = min(bar.total, int(elapsed))
            else:
                bar.n = self.counts.created
            bar.set_postfix_str(
                self.counts.line() + f" rate={sample['target_rate']:.0f}/s", refresh=True
            )

    # Run ----------------------------------------------------------------------------

    async def run(self) -> Counts:
        options = self.options
        if options.stats_path is not None:
            self._stats = options.stats_path.open("wb")
        total = (
            options.bursts * options.burst_size
            if options.bursts is not None
            else options.duration_s
        )
        bar = tqdm(
            total=total,
            unit="ev" if options.bursts is not None else "s",
            disable=options.quiet,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        await self.publish_config()
        self._started = time.monotonic()
        senders = [asyncio.create_task(self._send()) for _ in range(options.concurrency)]
        helpers = [asyncio.create_task(self._report(bar)), asyncio.create_task(self._follow())]
        try:
            await self._produce()
            self._end_by = min(self._end_by, time.monotonic() + options.grace_s)
            await self._settle(senders)
        finally:
            for task in [*senders, *helpers]:
                task.cancel()
            await asyncio.gather(*senders, *helpers, return_exceptions=True)
            self._leftovers()
            if self._stats is not None:
                self._stats.write(orjson.dumps(self._sample(time.monotonic() - self._started)))
                self._stats.close()
            bar.n = bar.total if self.options.bursts is None else self.counts.created
            bar.set_postfix_str(self.counts.line(), refresh=True)
            bar.close()
        return self.counts

    async def _settle(self, senders: list[asyncio.Task[None]]) -> None:
        """Deliver the rest until done, the end of the grace, or a second stop; what is
        unanswered then is cancelled by run()."""
        drain = asyncio.create_task(self._drain(senders))
        try:
            # A tick, not one long wait: a signal during the grace moves _end_by closer.
            while not drain.done() and not self._abort.is_set():
                if time.monotonic() >= self._end_by:
                    break
                await asyncio.wait([drain], timeout=TICK_S)
        finally:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)

    async def _drain(self, senders: list[asyncio.Task[None]]) -> None:
        """Send what is held back and every correction the last answers asked for."""
        while True:
            now = time.monotonic()
            self._release(now, everything=True)
            await self._flush(now, everything=True)
            await self._queue.join()
            if not self._held and not any(self._outbox.values()):
                break
        for _ in senders:
            await self._queue.put(None)
        await asyncio.gather(*senders)


def _env(name: str, cast: Callable[[str], Any], default: Any) -> Any:
    value = os.environ.get(name)
    return default if value in (None, "") else cast(value)


def build(argv: list[str] | None = None) -> tuple[Options, GeneratorConfig, Path | None]:
    """Options and profile from the command line over seed 001's variables over defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", choices=("seed-000", "seed-001"), default=None)
    parser.add_argument("--rate", type=float, help="events/s outside bursts (seed 000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (seed 000)")
    parser.add_argument("--ground-truth", type=Path, help="write acknowledged events here")
    parser.add_argument("--url", default=None, help="API root or ingest URL (INGEST_URL)")
    parser.add_argument("--devices", type=int, default=None, help="sensors (DEVICES)")
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None, help="events per request")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--duplicate-rate", type=float, default=None, help="DUPLICATE_RATE")
    parser.add_argument("--out-of-order-rate", type=float, default=None, help="OUT_OF_ORDER_RATE")
    parser.add_argument(
        "--max-out-of-order-ms", type=int, default=None, help="lateness bound (MAX_OUT_OF_ORDER_MS)"
    )
    parser.add_argument("--correction-rate", type=float, default=None)
    parser.add_argument("--invalid-rate", type=float, default=0.0, help="events sent malformed")
    parser.add_argument("--burst-multiplier", type=float, default=None)
    parser.add_argument("--burst-seconds", type=float, default=None, help="0 disables bursts")
    parser.add_argument("--burst-every", type=float, default=None, help="seconds between bursts")
    parser.add_argument("--first-burst-at", type=float, default=None, help="seconds after start")
    parser.add_argument("--bursts", type=int, default=None, help="seed 001: BURSTS")
    parser.add_argument("--burst-size", type=int, default=None, help="seed 001: BURST_SIZE")
    parser.add_argument(
        "--burst-interval-ms", type=int, default=None, help="seed 001: BURST_INTERVAL_MS"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--run-id", default=None, help="prefix of this run's device ids")
    parser.add_argument("--give-up-s", type=float, default=120.0, help="retries of one batch")
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds after --duration to deliver what is in flight, then give it up",
    )
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=5.0,
        help="the same after SIGINT/SIGTERM (at most --grace); a second signal: none",
    )
    parser.add_argument("--no-follow", action="store_true", help="ignore the backend's config")
    parser.add_argument("--control-tenant", default="default", help="tenant of the config")
    parser.add_argument("--stats", type=Path, help="write one JSON line of counters per second")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    bursts = args.bursts if args.bursts is not None else _env("BURSTS", int, None)
    profile = args.profile or (
        "seed-001" if bursts is not None and args.rate is None else "seed-000"
    )
    seed001 = profile == "seed-001"
    defaults = GeneratorConfig()

    def pick(arg: Any, env: str, cast: Callable[[str], Any], seed000: Any, seed_001: Any) -> Any:
        if arg is not None:
            return arg
        return _env(env, cast, seed_001 if seed001 else seed000)

    config = GeneratorConfig(
        rate=args.rate if args.rate is not None else defaults.rate,
        burst_multiplier=args.burst_multiplier or defaults.burst_multiplier,
        burst_seconds=(
            args.burst_seconds if args.burst_seconds is not None else defaults.burst_seconds
        ),
        burst_every_s=args.burst_every or defaults.burst_every_s,
        duplicate_rate=pick(args.duplicate_rate, "DUPLICATE_RATE", float, 0.0075, 0.05),
        out_of_order_rate=pick(args.out_of_order_rate, "OUT_OF_ORDER_RATE", float, 0.02, 0.1),
        max_out_of_order_ms=pick(args.max_out_of_order_ms, "MAX_OUT_OF_ORDER_MS", int, 5000, 5000),
        correction_rate=(
            args.correction_rate if args.correction_rate is not None else defaults.correction_rate
        ),
        batch_size=args.batch_size or (1 if seed001 else defaults.batch_size),
    ).check()
    options = Options(
        url=base_url(args.url or _env("INGEST_URL", str, "http://127.0.0.1:8000")),
        duration_s=args.duration,
        devices=pick(args.devices, "DEVICES", int, 2000, 5),
        tenants=args.tenants,
        sites=args.sites,
        concurrency=args.concurrency,
        seed=args.seed,
        run_id=args.run_id or secrets.token_hex(3),
        base_lat=_env("BASE_LAT", float, 37.7749),
        base_lon=_env("BASE_LON", float, -122.4194),
        invalid_rate=args.invalid_rate,
        give_up_s=args.give_up_s,
        grace_s=args.grace,
        stop_grace_s=args.stop_grace,
        follow=not args.no_follow,
        control_tenant=args.control_tenant,
        first_burst_at_s=args.first_burst_at,
        bursts=(bursts if bursts is not None else 10) if seed001 else None,
        burst_size=pick(args.burst_size, "BURST_SIZE", int, 100, 100),
        burst_interval_ms=pick(args.burst_interval_ms, "BURST_INTERVAL_MS", int, 1000, 1000),
        stats_path=args.stats,
        quiet=args.quiet,
    )
    return options, config, args.ground_truth


def truth_header(generator: Generator) -> dict[str, Any]:
    devices: dict[str, list[str]] = {}
    for sensor in generator.sensors:
        devices.setdefault(sensor.tenant, []).append(sensor.device_id)
    return {
        "run": generator.options.run_id,
        "started": datetime.now(UTC).isoformat(),
        "devices": devices,
        "profile": generator.config.knobs(),
    }


def _on_signal(generator: Generator, sig: signal.Signals) -> None:
    if generator.stopped_by is None:
        bound = generator.stop_grace()
        print(
            f"generate: {sig.name}: stopping; delivering what is in flight for up to "
            f"{bound:g} s (a second signal gives it up now)",
            file=sys.stderr,
        )
    else:
        print(f"generate: {sig.name}, a second signal: giving up what is left", file=sys.stderr)
    generator.stop(sig.name)


async def generate(
    options: Options,
    config: GeneratorConfig,
    truth_path: Path | None,
    client: httpx.AsyncClient | None = None,
    *,
    stop_on_signals: bool = False,
) -> Counts:
    """Run one generator; the client is a seam (tests pass an in-process transport)."""
    own = client is None
    if client is None:
        limits = httpx.Limits(
            max_connections=options.concurrency + 2, max_keepalive_connections=options.concurrency
        )
        client = httpx.AsyncClient(
            base_url=options.url, limits=limits, timeout=httpx.Timeout(30.0, connect=5.0)
        )
    generator = Generator(options, config, client)
    if truth_path is not None:
        generator.truth = TruthWriter(truth_path, truth_header(generator))
    if stop_on_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, generator, sig)
    try:
        counts = await generator.run()
    finally:
        if generator.truth is not None:
            generator.truth.close({"counts": asdict(generator.counts)})
        if own:
            await client.aclose()
    return counts


def cli(argv: list[str] | None = None) -> int:
    options, config, truth_path = build(argv)
    counts = asyncio.run(generate(options, config, truth_path, stop_on_signals=True))
    print(
        f"generate: run {options.run_id}: {counts.line()} confirmed={counts.confirmed} "
        f"unconfirmed={counts.unconfirmed} unsent={counts.unsent} late={counts.late} "
        f"resent={counts.resent} corrections={counts.corrections} shed={counts.shed}",
        file=sys.stderr,
    )
    if counts.unconfirmed or counts.unsent:
        print(
            f"generate: {counts.confirmed} events acknowledged; {counts.unconfirmed} sent "
            f"but never acknowledged (in the ground truth as unacknowledged), "
            f"{counts.unsent} never sent",
            file=sys.stderr,
        )
    failed = counts.unconfirmed or counts.unsent or counts.unexpected_rejects
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(cli())
