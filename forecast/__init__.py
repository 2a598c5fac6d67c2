"""Forecaster service (per-sensor statsforecast models); built in a later issue."""
