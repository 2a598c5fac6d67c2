"""Dependency aliases of the reads domain."""

from typing import Annotated

from fastapi import Depends, Request

from app.core.deps import ReadSourceDep
from app.reads.cache import ReadCache


async def _cache(request: Request, source: ReadSourceDep) -> ReadCache:
    """The cache of the pool this request reads: each keeps the refresher's state as its
    own pool shows it, so a lagging replica's answer is never judged by the primary's."""
    caches: dict[str, ReadCache] = request.app.state.caches
    return caches[source.name]


CacheDep = Annotated[ReadCache, Depends(_cache)]
