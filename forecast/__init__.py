"""Forecaster service: per-sensor statsforecast models trained, stored and served.

`uvicorn forecast.main:app` on :8001. The API process never imports this package, so
statsforecast never loads there.
"""
