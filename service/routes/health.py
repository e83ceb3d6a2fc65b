"""``/health/live`` and ``/health/ready``: liveness and readiness for orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..deps import BatcherDep, InspectorDep
from ..recording import records_state
from ..schemas import Health
from .responses import E503

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=Health, response_model_exclude_none=True,
            summary="Liveness",
            description="200 while the process runs.")
async def live() -> Health:
    return Health(status="alive")


@router.get("/health/ready", response_model=Health, summary="Readiness",
            description="200 once a model is loaded and the batcher runs, else 503.",
            responses=E503)
async def ready(request: Request, inspector: InspectorDep, batcher: BatcherDep) -> Health:
    return Health(status="ready", model_version=str(inspector.info.get("version", "")),
                  records=records_state(request))
