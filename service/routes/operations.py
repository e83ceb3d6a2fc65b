"""``/metrics``: Prometheus metrics, open like the health endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..deps import MetricsDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            description="Requests by endpoint and status, inspections by label, latency "
                        "histogram, batch sizes, queue depth (Prometheus text format). Open "
                        "like the health endpoints: it carries counts, never images.",
            responses={200: {"content": {"text/plain": {}},
                             "description": "Prometheus exposition format."}})
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=metrics.content_type)
