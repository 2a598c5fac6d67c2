"""The shape of the pipeline answer, for the OpenAPI document (the route answers orjson)."""

from pydantic import BaseModel


class StreamState(BaseModel):
    name: str
    length: int
    backlog: int
    oldest_pending_age_s: float


class ConsumerState(BaseModel):
    name: str
    pending: int
    idle_ms: int


class WorkerState(BaseModel):
    name: str
    status: str


class Pipeline(BaseModel):
    as_of: str
    ingest_rate_per_s: float
    ingest_rate_window_s: int
    stream: StreamState
    consumers: list[ConsumerState]
    dead_letters: int
    rollup_watermark_lag_s: float | None
    database: str
    workers: list[WorkerState]
