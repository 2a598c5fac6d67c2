"""Dependency aliases of the reads domain."""

from typing import Annotated

from fastapi import Depends, Request

from app.reads.cache import ReadCache


async def _cache(request: Request) -> ReadCache:
    cache: ReadCache = request.app.state.cache
    return cache


CacheDep = Annotated[ReadCache, Depends(_cache)]
