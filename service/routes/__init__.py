"""The HTTP API, one module per resource: health, the loaded model, the models root's
parts (versions, activation, challenger, score drift), inspection, operator labels, recorded
inspections, operations (metrics); and the pages: Swagger UI and ReDoc (self-hosted) and the
operator page. :data:`router` holds them all, in the order Swagger UI lists
them.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import docs, health, inspect, inspections, labels, model, models, operations, page

router = APIRouter()
router.include_router(health.router)
router.include_router(model.router)
router.include_router(models.router)
router.include_router(inspect.router)
router.include_router(labels.router)
router.include_router(inspections.router)
router.include_router(operations.router)
router.include_router(docs.router)
router.include_router(page.router)
