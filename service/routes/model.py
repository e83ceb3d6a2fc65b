"""``/v1/model``: one part's active version, loaded (the default part unless ``?model=``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ..deps import FleetDep, SettingsDep, require_api_key
from ..errors import InvalidParameter
from ..schemas import ModelInfo, Thresholds
from .responses import E401, E404, E503

router = APIRouter(prefix="/v1", tags=["inspection"], dependencies=[Depends(require_api_key)])


@router.get("/model", response_model=ModelInfo, response_model_exclude_none=True,
            summary="The loaded model",
            response_description="Name, version, thresholds, fusion rule, device, evaluation.",
            responses=E401 | E404 | E503)
async def model_info(fleet: FleetDep, settings: SettingsDep, model: Annotated[
        str | None, Query(description="A part of the models root; default: the default part "
                                      "(KENSA_DEFAULT_MODEL, the only one), else the part the "
                                      "server loaded first.", examples=["screws"])] = None
                     ) -> ModelInfo:
    try:
        served = await fleet.get(model)
    except InvalidParameter:  # several parts, no default: the operator page still gets one
        served = await fleet.get(fleet.primary)
    inspector, info = served.inspector, served.info
    default = settings.threshold if settings.threshold is not None else inspector.image_threshold
    return ModelInfo(
        model=served.part if served.from_root else None,
        name=str(info.get("name", "")), version=str(info.get("version", "")),
        created=str(info.get("created", "")), image_size=int(info["image_size"]),
        channels=int(info["channels"]), thresholds=Thresholds(**info["thresholds"]),
        default_threshold=float(default), fusion=dict(info.get("fusion", {})),
        keep_aspect=inspector.cfg.keep_aspect,
        device=str(inspector.device), flips=list(inspector.cal.flips),
        metrics=dict(info.get("metrics") or {}),
        data=dict(info.get("data") or {}))
