"""Prometheus metrics of the forecaster process (GET /metrics on :8001)."""

from prometheus_client import Counter, Gauge, Histogram

TRAININGS = Gauge(
    "telemetry_forecast_trainings", "Trainings in the process pool, running or queued"
)
TRAIN_SECONDS = Histogram(
    "telemetry_forecast_train_seconds",
    "Candidates, backtest and refit of one training, in a pool process",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TRAIN_REQUEST_SECONDS = Histogram(
    "telemetry_forecast_train_request_seconds",
    "One POST /train: history read, queue, training and storing",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PREDICT_SECONDS = Histogram(
    "telemetry_forecast_predict_seconds",
    "Loading an artifact and predicting from it (in-process, off the event loop)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
WARM_UP_SECONDS = Gauge(
    "telemetry_forecast_warm_up_seconds",
    "What warming statsforecast up cost at start-up",
    ["where"],
)
MODELS_TRAINED = Counter("telemetry_forecast_models_total", "Model versions stored", ["model"])
PREDICTED_TRANSITIONS = Counter(
    "telemetry_forecast_alert_transitions_total",
    "Predicted-breach transitions notified",
    ["state"],
)
PREDICTED_EVAL_SECONDS = Histogram(
    "telemetry_forecast_alert_eval_seconds",
    "One scheduled pass over the predicted-breach rules",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
PREDICTED_EVAL_FAILURES = Counter(
    "telemetry_forecast_alert_eval_failures_total",
    "Predicted-breach evaluations that failed (logged; the next pass tries again)",
)
