"""``Annotated`` dependency aliases: what a route needs, reached through ``app.state``.

The lifespan in ``service.app`` puts the inspector and the batcher on ``app.state``; until it
has, :data:`InspectorDep` and :data:`BatcherDep` answer 503. :data:`LabelStoreDep` answers
503 when the server has no ``KENSA_LABELS_DIR``.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader

from .batcher import Batcher
from .config import MIN_THRESHOLD, MIN_THRESHOLD_WHY, Settings
from .errors import Forbidden, InvalidParameter, LabelingOff, NotReady, Unauthorized
from .labels import LabelStore
from .monitoring import Metrics
from .serving import Fleet, Served

if TYPE_CHECKING:
    from models.inference import Inspector
else:
    Inspector = Any

INCLUDES = ("mask", "heatmap", "overlay", "reconstruction")
NOT_READY = "the model is not loaded yet: retry when /health/ready answers 200"
LABELS_OFF = ("labeling is off on this server: start it with KENSA_LABELS_DIR set to a "
              "writable folder, where labeled images and labels.csv are kept for "
              "`kensa train --labels`")

SESSION_COOKIE = "kensa_key"  # the operator page's login keeps the key here (HttpOnly)
PAGE_HEADER = "X-Kensa-Page"  # sent by the page's script on every call
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="APIKey",
    description="Needed on every /v1/* call when the server has KENSA_API_KEYS set.")


def app_settings(request: Request) -> Settings:
    return request.app.state.settings


def app_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def loaded_inspector(request: Request) -> Inspector:
    inspector = getattr(request.app.state, "inspector", None)
    if inspector is None:
        raise NotReady(NOT_READY)
    return inspector


def running_batcher(request: Request) -> Batcher:
    batcher = getattr(request.app.state, "batcher", None)
    if batcher is None or not batcher.started:
        raise NotReady(NOT_READY)
    return batcher


def loaded_fleet(request: Request) -> Fleet:
    fleet = getattr(request.app.state, "fleet", None)
    if fleet is None:
        raise NotReady(NOT_READY)
    return fleet


async def served_model(request: Request, model: Annotated[str | None, Query(
        description="The part to inspect with (a folder of KENSA_MODELS_DIR); default "
                    "KENSA_DEFAULT_MODEL, or the only part.", examples=["screws"])] = None
                       ) -> Served:
    """The part's active version, taken once: the request keeps it even if a swap follows."""
    return await loaded_fleet(request).get(model)


def label_store(request: Request) -> LabelStore:
    store = getattr(request.app.state, "labels", None)
    if store is None:
        raise LabelingOff(LABELS_OFF)
    return store


def valid_key(key: str, keys: list[str]) -> bool:
    """Whether ``key`` is one of ``keys``, in constant time."""
    # compare against every key so the time taken says nothing about which one was close
    matches = [hmac.compare_digest(key.encode(), k.encode()) for k in keys]
    return any(matches)


def require_api_key(request: Request,
                    key: Annotated[str | None, Security(api_key_header)] = None) -> None:
    """Checks ``X-API-Key`` against KENSA_API_KEYS in constant time (open when unset).

    The operator page's browser sends the key as the HttpOnly cookie its login set instead;
    a state-changing call made that way must also carry ``X-Kensa-Page``, a header that a
    cross-site form cannot send (403 otherwise).
    """
    keys = request.app.state.settings.api_keys
    if not keys:
        return
    from_cookie = not key
    key = key or request.cookies.get(SESSION_COOKIE)
    if not key:
        raise Unauthorized("missing X-API-Key header: this server needs an API key on /v1/*; "
                           "ask its operator for one")
    if not valid_key(key, keys):
        raise Unauthorized("the key the page saved is no longer valid: sign in again at /ui/"
                           if from_cookie else
                           "the X-API-Key header is not a valid key for this server")
    if from_cookie and request.method not in SAFE_METHODS and PAGE_HEADER not in request.headers:
        raise Forbidden(f"a call signed in by the page's cookie must carry the {PAGE_HEADER} "
                        "header (cross-site forms cannot send it); send X-API-Key instead")


def parse_include(include: Annotated[str | None, Query(
        description="Pictures to add to the answer, a comma list of "
                    "`mask`, `heatmap`, `overlay`, `reconstruction` (default: none; each costs "
                    "encoding time).", examples=["mask,heatmap"])] = None) -> frozenset[str]:
    if not include:
        return frozenset()
    asked = {p.strip().lower() for p in include.split(",") if p.strip()}
    unknown = sorted(asked - set(INCLUDES))
    if unknown:
        raise InvalidParameter(
            f"query parameter 'include': unknown value(s) {', '.join(unknown)}; choose from "
            f"{', '.join(INCLUDES)} (comma-separated)")
    return frozenset(asked)


def request_threshold(threshold: Annotated[float | None, Query(
        allow_inf_nan=False,
        description="Image threshold for this request, on the fused score (unitless): "
                    "overrides KENSA_THRESHOLD and the bundle's calibrated default; the answer "
                    "reports the one applied; at least 0.001.", examples=[0.02])] = None
                      ) -> float | None:
    if threshold is not None and threshold < MIN_THRESHOLD:
        raise InvalidParameter(
            f"query parameter 'threshold' is {threshold!r}: send a number of at least "
            f"{MIN_THRESHOLD:g} {MIN_THRESHOLD_WHY}")
    return threshold


SettingsDep = Annotated[Settings, Depends(app_settings)]
MetricsDep = Annotated[Metrics, Depends(app_metrics)]
InspectorDep = Annotated[Inspector, Depends(loaded_inspector)]
BatcherDep = Annotated[Batcher, Depends(running_batcher)]
LabelStoreDep = Annotated[LabelStore, Depends(label_store)]
FleetDep = Annotated[Fleet, Depends(loaded_fleet)]
ServedDep = Annotated[Served, Depends(served_model)]
IncludeDep = Annotated[frozenset[str], Depends(parse_include)]
ThresholdDep = Annotated[float | None, Depends(request_threshold)]
