"""Telemetry platform: ingest and read API."""
