"""Routes for alerts (to be built)."""

from fastapi import APIRouter

router = APIRouter(tags=["alerts"])
