"""Dependency aliases of the ingest domain."""

from typing import Annotated

from fastapi import Depends, Request

from app.ingest.backpressure import BacklogGate
from app.ingest.enqueue import Enqueuer


async def _enqueuer(request: Request) -> Enqueuer:
    enqueuer: Enqueuer = request.app.state.enqueuer
    return enqueuer


async def _gate(request: Request) -> BacklogGate:
    gate: BacklogGate = request.app.state.gate
    return gate


EnqueuerDep = Annotated[Enqueuer, Depends(_enqueuer)]
GateDep = Annotated[BacklogGate, Depends(_gate)]
