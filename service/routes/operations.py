"""``/metrics``: Prometheus metrics, behind the API key when keys are set (they count verdicts)
unless ``KENSA_PUBLIC_METRICS``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from ..deps import MetricsDep, api_key_header, require_api_key
from ..drift import refresh_gauges


def metrics_key(request: Request, key: str | None = Depends(api_key_header)) -> None:
    """The API key check, unless KENSA_PUBLIC_METRICS opens /metrics to scrapers."""
    if not request.app.state.settings.public_metrics:
        require_api_key(request, key)


router = APIRouter(tags=["operations"], dependencies=[Depends(metrics_key)])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            description="Requests by endpoint and status, inspections by label, latency "
                        "histogram, batch sizes, queue depth, score drift of each loaded part "
                        "(Prometheus text format). Needs X-API-Key when the server has keys, "
                        "unless KENSA_PUBLIC_METRICS.",
            responses={200: {"content": {"text/plain": {}},
                             "description": "Prometheus exposition format."}})
async def prometheus_metrics(request: Request, metrics: MetricsDep) -> Response:
    await run_in_threadpool(refresh_gauges, request.app)
    return Response(metrics.render(), media_type=metrics.content_type)
