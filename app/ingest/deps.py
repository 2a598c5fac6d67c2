"""Dependency aliases of the ingest domain."""

from typing import Annotated

from fastapi import Depends, Request

from app.ingest.admission import Admission
from app.ingest.group import GroupCommit
from app.ingest.rate import IngestRate


async def _group(request: Request) -> GroupCommit:
    group: GroupCommit = request.app.state.group_commit
    return group


async def _gate(request: Request) -> Admission:
    gate: Admission = request.app.state.gate
    return gate


GroupDep = Annotated[GroupCommit, Depends(_group)]
GateDep = Annotated[Admission, Depends(_gate)]


async def _rate(request: Request) -> IngestRate:
    rate: IngestRate = request.app.state.ingest_rate
    return rate


RateDep = Annotated[IngestRate, Depends(_rate)]
