"""Routes for generator (to be built)."""

from fastapi import APIRouter

router = APIRouter(tags=["generator"])
