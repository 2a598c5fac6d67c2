"""The shapes of the device and site listings, for the OpenAPI document."""

from pydantic import BaseModel


class Device(BaseModel):
    device_id: str
    site_id: str | None
    last_ts: str
    metrics: dict[str, float]


class Devices(BaseModel):
    devices: list[Device]
    truncated: bool


class Site(BaseModel):
    site_id: str
    devices: int


class Sites(BaseModel):
    sites: list[Site]
    truncated: bool
