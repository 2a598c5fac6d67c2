"""Dependency aliases of the alerts domain."""

from typing import Annotated

from fastapi import Depends, Request

from app.alerts.fanout import AlertFanout
from app.alerts.state import AlertStream


async def _fanout(request: Request) -> AlertFanout:
    fanout: AlertFanout = request.app.state.alert_fanout
    return fanout


async def _alert_stream(request: Request) -> AlertStream:
    alert_stream: AlertStream = request.app.state.alert_stream
    return alert_stream


FanoutDep = Annotated[AlertFanout, Depends(_fanout)]
AlertStreamDep = Annotated[AlertStream, Depends(_alert_stream)]
