"""A fake forecaster: a tiny ASGI app answering /predict and /readyz as forecast/routes.py
does, for the API's proxy to talk to through an httpx transport."""

from fastapi import FastAPI, Request, Response

from app.core.responses import json_response

POINTS = [{"time": "2025-06-01T11:00:00Z", "forecast": 10.0, "lo80": 8.0, "hi80": 12.0,
           "lo95": 7.0, "hi95": 13.0}]  # fmt: skip
PREDICTION = {
    "scope": "device", "sensor_id": "d1", "metric": "power_w", "version": 3,
    "model": "AutoETS", "step": "1m", "step_s": 60, "horizon": "1h", "horizon_steps": 60,
    "trained_at": "2025-06-01T10:00:00Z", "points": POINTS,
}  # fmt: skip


class FakeForecaster:
    """Answers /predict by the device asked for, and records what it was sent."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], dict[str, str]]] = []
        self.ready = True
        self.app = FastAPI()
        self.app.get("/predict")(self.predict)
        self.app.get("/readyz")(self.readyz)

    async def predict(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.seen.append((params, dict(request.headers)))
        device = params.get("device_id")
        if device == "missing":
            error = {"code": "not_found", "message": "no model", "field": "device_id"}
            return json_response({"error": error}, 404)
        if device == "conflict":
            return json_response({"error": {"code": "conflict", "message": "step"}}, 409)
        if device == "invalid":
            error = {"code": "invalid", "message": "bad horizon", "field": "horizon"}
            return json_response({"error": error}, 422)
        if device == "busy":
            return json_response({"error": {"code": "unavailable", "message": "db"}}, 503,
                                 {"Retry-After": "7"})  # fmt: skip
        if device == "broken":
            return Response("boom", 500)
        return json_response(PREDICTION)

    async def readyz(self) -> Response:
        return json_response({"status": "ready"}, 200 if self.ready else 503)
