"""Prometheus metrics shared by the API and the workers.

Each process serves its own registry: the API at GET /metrics, each worker on its own
port (WORKER_METRICS_PORT + index). A port per worker keeps every process independent,
with no shared multiprocess directory to clean up after a SIGKILL.
"""

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("telemetry_events_total", "Events seen by the ingest API", ["status"])
BACKLOG_ENTRIES = Gauge(
    "telemetry_stream_backlog_entries", "Stream entries not yet acknowledged by the group"
)
BACKLOG_AGE = Gauge(
    "telemetry_stream_oldest_pending_age_seconds", "Age of the oldest unacknowledged entry"
)
# Redis Cluster: per shard (app/core/shards.py).
SHARD_BACKLOG_ENTRIES = Gauge(
    "telemetry_stream_shard_backlog_entries",
    "Entries of one shard's stream not yet acknowledged by the group",
    ["shard"],
)
SHARD_BACKLOG_AGE = Gauge(
    "telemetry_stream_shard_oldest_pending_age_seconds",
    "Age of the oldest unacknowledged entry of one shard's stream",
    ["shard"],
)
SHARD_ENQUEUED = Counter(
    "telemetry_shard_events_enqueued_total", "Events appended to one shard's stream", ["shard"]
)
SHARD_STORED = Counter(
    "telemetry_worker_shard_events_stored_total",
    "Events this worker stored from one shard",
    ["shard"],
)
BATCH_EVENTS = Histogram(
    "telemetry_worker_batch_events",
    "Events per stored batch",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000),
)
UPSERT_SECONDS = Histogram(
    "telemetry_worker_upsert_seconds",
    "Time of one batch transaction",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STORED = Counter("telemetry_worker_events_stored_total", "Events written by this worker")
DEAD_LETTERS = Counter("telemetry_dead_letters_total", "Entries and events dead-lettered", ["kind"])
DEAD_LETTER_ENTRIES = Gauge("telemetry_dead_letter_entries", "Entries in the dead-letter stream")
DB_RETRIES = Counter("telemetry_worker_db_retries_total", "Database faults waited out and retried")
WORKER_FAULT = Gauge(
    "telemetry_worker_fault",
    "1 while the worker waits out a fault of the system (nothing acked or dead-lettered)",
    ["kind"],
)

# Alerts (issue 4).
ALERT_TRANSITIONS = Counter(
    "telemetry_alert_transitions_total", "Alert state transitions notified", ["state"]
)
ALERT_EVAL_SECONDS = Histogram(
    "telemetry_alert_eval_seconds",
    "Alert evaluation of one committed batch",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
ALERT_RULES = Gauge("telemetry_alert_rules", "Alert rules this worker holds in memory")
ALERT_HISTORY = Counter("telemetry_alert_history_total", "Alert transitions written to history")
ALERT_SSE_CLIENTS = Gauge("telemetry_alert_sse_clients", "Connected alert stream clients")
ALERT_SSE_OVERFLOWS = Counter(
    "telemetry_alert_sse_overflows_total", "Alert stream clients ended for falling behind"
)

# Read API (issue 3).
CACHE_HITS = Counter("telemetry_read_cache_hits_total", "Read cache hits", ["endpoint"])
CACHE_MISSES = Counter("telemetry_read_cache_misses_total", "Read cache misses", ["endpoint"])
WATERMARK_LAG = Gauge(
    "telemetry_aggregate_watermark_lag_seconds",
    "Age of the rollup watermark: minutes past it are read from raw rows",
)
REFRESH_SECONDS = Histogram(
    "telemetry_rollup_refresh_seconds",
    "One refresher round",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ROLLUP_QUARANTINED = Counter(
    "telemetry_rollup_quarantined_total",
    "Rollup pieces (minute and series) the database refused to build, left out and recorded",
)
ALERT_EVAL_FAILURES = Counter(
    "telemetry_alert_eval_failures_total",
    "(rule, device) evaluations the alert script refused, skipped and logged",
)
QUEUE_DURABILITY = Gauge(
    "telemetry_queue_durability", "1 for the queue's current durability level", ["level"]
)
TENANT_LIMITED = Counter(
    "telemetry_tenant_rate_limited_total", "Ingest requests refused for a tenant's rate", ["tenant"]
)

# Reads from a replica (app/core/replica.py).
REPLICA_LAG = Gauge(
    "telemetry_read_replica_lag_seconds",
    "The read replica's replay lag at the last probe (NaN when it did not answer)",
)
REPLICA_IN_USE = Gauge(
    "telemetry_read_replica_in_use", "1 while reads go to the replica, 0 while to the primary"
)
REPLICA_FALLBACKS = Counter(
    "telemetry_read_replica_fallbacks_total",
    "Moves of the reads from the replica to the primary",
    ["reason"],
)
