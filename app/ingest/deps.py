"""Dependency aliases of the ingest domain."""

from typing import Annotated

from fastapi import Depends, Request

from app.ingest.admission import Admission
from app.ingest.enqueue import Enqueuer


async def _enqueuer(request: Request) -> Enqueuer:
    enqueuer: Enqueuer = request.app.state.enqueuer
    return enqueuer


async def _gate(request: Request) -> Admission:
    gate: Admission = request.app.state.gate
    return gate


EnqueuerDep = Annotated[Enqueuer, Depends(_enqueuer)]
GateDep = Annotated[Admission, Depends(_gate)]
