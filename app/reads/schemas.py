"""The shapes of the read answers, for the OpenAPI document (routes answer pre-encoded JSON)."""

from pydantic import BaseModel, Field


class Event(BaseModel):
    event_id: str
    device_id: str
    site_id: str | None
    ts: str
    metrics: dict[str, float]
    tags: list[str]


class DeviceEvents(BaseModel):
    device_id: str
    events: list[Event]
    next_cursor: str | None


class SensorRecent(BaseModel):
    sensor_id: str
    events: list[Event]


class EventPage(BaseModel):
    page: int
    size: int
    events: list[Event]
    has_more: bool


class MetricValue(BaseModel):
    value: float
    ts: str


class DeviceStatus(BaseModel):
    device_id: str
    site_id: str | None
    last_seen: str
    metrics: dict[str, MetricValue]


class SearchResult(BaseModel):
    tags: list[str]
    events: list[Event]
    next_cursor: str | None


class Quarantined(BaseModel):
    minute: str
    device_id: str
    metric: str
    whole_minute: bool


class Fresh(BaseModel):
    """An aggregate answer: its range, when it was computed and its staleness bound; and,
    only when some exist, the rollup pieces inside it the refresher could not build."""

    from_: str = Field(alias="from")
    to: str
    as_of: str
    staleness_bound_s: float
    quarantined: list[Quarantined] | None = None


class Bucket(BaseModel):
    start: str
    end: str
    count: int
    sum: float
    avg: float
    min: float
    max: float


class Aggregate(Fresh):
    metric: str
    device_id: str | None = None
    site_id: str | None = None
    interval: str
    interval_s: int
    buckets: list[Bucket]


class EnergyWindow(BaseModel):
    start: str
    end: str
    avg_power_w: float
    peak_power_w: float
    energy_wh: float
    cumulative_energy_wh: float


class SiteEnergy(Fresh):
    site_id: str
    metric: str
    window: str
    window_s: int
    windows: list[EnergyWindow]
    energy_wh: float


class Efficiency(Fresh):
    device_id: str | None = None
    site_id: str | None = None
    window: str
    dc_metric: str
    ac_metric: str
    dc_delivered: float
    ac_consumed: float
    efficiency_pct: float | None
    threshold_pct: float
    status: str
