"""Routes for reads (to be built)."""

from fastapi import APIRouter

router = APIRouter(tags=["reads"])
