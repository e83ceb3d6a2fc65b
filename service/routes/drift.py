"""``/v1/models/{part}/drift``: whether a part's recent normal images still score like the
held-out normals its thresholds were set on (:mod:`service.drift`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from .. import drift
from ..deps import NOT_READY, SettingsDep, require_api_key
from ..errors import NotFound, NotReady
from ..schemas import DriftReport
from .inspections import E503 as RECORDS_E503
from .inspections import StoreDep
from .responses import E401, error_response

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)])

E404 = {404: error_response("No such part is served.",
                            "no part 'screws' is served here; the parts are: washers")}


def served(request: Request, part: str):
    """The inspector serving ``part``.

    Raises:
        NotReady: the model is not loaded yet.
        NotFound: no such part (the detail lists the served ones).
    """
    parts = drift.served_parts(request.app)
    if not parts:
        raise NotReady(NOT_READY)
    if part not in parts:
        raise NotFound(f"no part {part!r} is served here; the parts are: "
                       f"{', '.join(sorted(parts))}")
    return parts[part]


@router.get("/models/{part}/drift", response_model=DriftReport, summary="Score drift of a part",
            response_description="The drift statistic and p-value, and false alarms among "
                                 "reviewed images, for all sources and each source.",
            description="Compares the fused scores of the newest records judged normal (or "
                        "reviewed good) with the bundle's held-out normal scores, both below "
                        "the threshold (two-sample Kolmogorov-Smirnov), and counts reviewed "
                        "false alarms. Needs the records store (KENSA_RECORDS).",
            responses=E401 | E404 | RECORDS_E503)  # 503 also while the model loads
async def part_drift(request: Request, part: str, store: StoreDep,
                     settings: SettingsDep) -> DriftReport:
    inspector = served(request, part)
    report = await run_in_threadpool(drift.part_drift, store, inspector, settings.threshold,
                                     settings.drift_window)
    return DriftReport(part=part, **report)
