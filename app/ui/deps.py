"""Dependency aliases of the dashboard's own routes."""

from typing import Annotated

from fastapi import Depends, Request

from app.ui.static import Frontend


async def _frontend(request: Request) -> Frontend:
    frontend: Frontend = request.app.state.frontend
    return frontend


FrontendDep = Annotated[Frontend, Depends(_frontend)]
