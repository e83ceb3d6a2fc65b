"""``/v1/models``: the models root's parts and versions, activation (hot swap, rollback),
challenger scoring and score drift (:mod:`service.drift`). ``/v1/model`` (routes/model.py)
describes one loaded version."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from .. import drift
from ..challenger import reviewed_accuracy
from ..deps import FleetDep, SettingsDep, require_api_key
from ..errors import Conflict, NotFound
from ..schemas import (
    ChallengerReport,
    DriftReport,
    ModelPart,
    ModelsList,
    ModelVersion,
    VersionChoice,
)
from ..serving import Fleet
from .inspections import E503 as RECORDS_E503
from .inspections import StoreDep
from .responses import E401, E404, E409, E422, E503

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Depends(require_api_key)])


@router.get("", response_model=ModelsList, summary="Parts and their versions",
            description="Every part of the models root: its versions (creation time, stored "
                        "evaluation), the active one, the one a rollback returns to, the one "
                        "this server judges with now and a running challenger.",
            responses=E401 | E503)
async def list_models(request: Request, fleet: FleetDep) -> ModelsList:
    running = request.app.state.challengers.running
    parts = await run_in_threadpool(describe_parts, fleet)
    for part in parts:
        if part.model in running:
            part.challenger = running[part.model].served.version
    return ModelsList(default=fleet.default_part(), models=parts)


def describe_parts(fleet: Fleet) -> list[ModelPart]:
    """The parts as the models root's files say (worker thread)."""
    if fleet.root is None:
        served = fleet.loaded[fleet.primary]
        info = served.info
        return [ModelPart(model=served.part, active=served.version, previous=None,
                          serving=served.version, versions=[ModelVersion(
                              version=served.version, created=str(info.get("created", "")),
                              active=True, metrics=dict(info.get("metrics") or {}))])]
    out = []
    for part in fleet.root.parts():
        active = fleet.root.active(part)
        loaded = fleet.loaded.get(part)
        out.append(ModelPart(
            model=part, active=active, previous=fleet.root.previous(part),
            serving=loaded.version if loaded else None,
            versions=[ModelVersion(version=v.name, created=v.created, active=v.name == active,
                                   metrics=v.metrics) for v in fleet.root.versions(part)]))
    return out


@router.post("/{part}/activate", response_model=ModelPart, summary="Activate a version",
             description="Loads, verifies and warms the version beside the active one, points "
                         "the part's `active` file at it and swaps it in: requests under way "
                         "finish on the old version, later ones get the new. Rollback: "
                         "activate `previous` from GET /v1/models. Other replicas follow "
                         "within KENSA_MODEL_POLL_S.",
             responses=E401 | E404 | E409 | E422 | E503)
async def activate(part: str, body: VersionChoice, fleet: FleetDep) -> ModelPart:
    await fleet.activate(part, body.version)
    [described] = [p for p in await run_in_threadpool(describe_parts, fleet) if p.model == part]
    return described


@router.post("/{part}/challenger", response_model=ChallengerReport,
             summary="Start a challenger",
             description="From now on every image of the part is also judged by this version, "
                         "off the answer path (answers are never delayed or changed; images "
                         "are skipped when it falls behind, and counted). Replaces a running "
                         "challenger. The tallies live in this server's memory.",
             responses=E401 | E404 | E409 | E422 | E503)
async def start_challenger(request: Request, part: str, body: VersionChoice,
                           fleet: FleetDep) -> ChallengerReport:
    fleet.resolve(part)
    if fleet.root is None:
        raise Conflict("this server serves one bundle (KENSA_MODEL): start it with "
                       "KENSA_MODELS_DIR to run a challenger")
    served = await fleet.load(part, body.version)
    challenger = request.app.state.challengers.start(served)
    return await report(request, fleet, part, challenger)


@router.get("/{part}/challenger", response_model=ChallengerReport,
            summary="Compare the challenger with the active version",
            description="Counts of both models' labels, their agreement, the ids of images "
                        "they disagree on and, for images reviewed in the records store, each "
                        "model's accuracy.", responses=E401 | E404 | E503)
async def challenger_report(request: Request, part: str, fleet: FleetDep) -> ChallengerReport:
    return await report(request, fleet, part, running_challenger(request, fleet, part))


@router.delete("/{part}/challenger", response_model=ChallengerReport,
               summary="Stop the challenger", description="Stops it; answers its last report.",
               responses=E401 | E404 | E503)
async def stop_challenger(request: Request, part: str, fleet: FleetDep) -> ChallengerReport:
    challenger = running_challenger(request, fleet, part)
    request.app.state.challengers.stop(part)
    return await report(request, fleet, part, challenger)


def running_challenger(request: Request, fleet: Fleet, part: str):
    fleet.resolve(part)
    challenger = request.app.state.challengers.running.get(part)
    if challenger is None:
        raise NotFound(f"no challenger runs for {part!r}: start one with POST "
                       f"/v1/models/{part}/challenger {{\"version\": \"...\"}}")
    return challenger


async def report(request: Request, fleet: Fleet, part: str, challenger) -> ChallengerReport:
    snap = challenger.snapshot()
    judged = snap.pop("judged")
    store = request.app.state.store
    reviews = (await run_in_threadpool(store.records.review_labels, list(judged))
               if store is not None and judged else {})
    loaded = fleet.loaded.get(part)
    return ChallengerReport(model=part, active_version=loaded.version if loaded else None,
                            **snap, **reviewed_accuracy(judged, reviews))


@router.get("/{part}/drift", response_model=DriftReport, summary="Score drift of a part",
            response_description="The drift statistic and p-value, and false alarms among "
                                 "reviewed images, for all sources and each source.",
            description="Compares the fused scores of the newest records of the part's active "
                        "version judged normal (or reviewed good) with that version's held-out "
                        "normal scores, both below the threshold (two-sample "
                        "Kolmogorov-Smirnov), and counts reviewed false alarms. Loads the part "
                        "if it is not loaded yet. Needs the records store (KENSA_RECORDS).",
            responses=E401 | E404 | E409 | RECORDS_E503)  # 503 also while the model loads
async def part_drift(part: str, store: StoreDep, fleet: FleetDep,
                     settings: SettingsDep) -> DriftReport:
    served = await fleet.get(part)
    report = await run_in_threadpool(drift.part_drift, store, served, settings.threshold,
                                     settings.drift_window)
    return DriftReport(part=served.part, **report)
