"""Server settings, read from the environment only (prefix ``KENSA_``).

Every option of ``kensa serve`` has an environment twin, e.g. ``KENSA_MODEL=/models/screws``,
``KENSA_API_KEYS=key1,key2``. Tests build :class:`Settings` directly and hand it to
``create_app``; production code asks :func:`get_settings`, which reads the environment once.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.data import JPEG_MAX_SIDE, ImageLimits

MB = 1024 * 1024
# the fused image score is in units of the calibrated thresholds (about 1 at the threshold); a
# thousandth of that labels every image abnormal already, so anything lower is a typo or a test
MIN_THRESHOLD = 0.001
MIN_THRESHOLD_WHY = ("(the fused score is in units of the calibrated thresholds, about 1; under "
                     "0.001 every image would be abnormal)")


class Settings(BaseSettings):
    """Everything the server can be told at start-up."""

    model_config = SettingsConfigDict(env_prefix="KENSA_", extra="ignore")

    model: Path | None = Field(
        None, description="Bundle directory written by `kensa train` (KENSA_MODEL).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where inference runs; auto picks CUDA when present.")
    runtime: Literal["torch", "onnx", "auto"] = Field(
        "auto", description="What runs the networks: torch, onnxruntime on the ONNX graphs "
                            "`kensa export` added to the bundle, or auto: on a CPU, onnx for "
                            "a bundle with graphs when onnxruntime is installed; else torch "
                            "(always on CUDA).")
    host: str = Field("127.0.0.1", description="Interface to bind (docker sets 0.0.0.0).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    max_batch: int = Field(
        64, ge=1, le=4096, description="Most images one /v1/inspect/batch request may carry.")
    max_upload_mb: float = Field(20.0, gt=0, description="Largest accepted file, in MiB.")
    max_pixels: int = Field(
        16_000_000, ge=1, description="Largest accepted image, width x height in pixels "
                                      "(16 MP of RGB take about 490 MiB while served, within "
                                      "the default KENSA_MAX_INFLIGHT_MB).")
    # a line-scan strip of 20:1 at the 16 MP default is 17,889 px long: the side limit rarely
    # binds before the pixel limit, and can never pass the overlay JPEG's 65,500
    max_side: int = Field(
        32_768, ge=1, le=JPEG_MAX_SIDE, description="Longest accepted image side, in pixels "
                                                     "(at most 65,500, the JPEG overlay's).")
    # the default network's deepest stage works on 16 x 16 pixel cells (depth 4): a thinner
    # image gives it less than one cell of real pixels
    min_side: int = Field(16, ge=1, description="Shortest accepted image side, in pixels.")
    # at 20:1 the short side still spans 3-4 of those cells at the model's scale; beyond, the
    # rounding of sides to the stride distorts the image by tens of percent
    max_aspect: float = Field(
        20.0, ge=1, description="Most an image's longer side may exceed its shorter one "
                                "(20: twenty times as long as wide).")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma list of accepted X-API-Key values; empty leaves /v1/* open.")
    public_docs: bool = Field(
        True, description="Serve /docs, /redoc and /openapi.json to anyone (the API's "
                          "description, no data); false: not served at all.")
    public_metrics: bool = Field(
        False, description="Serve /metrics without X-API-Key when KENSA_API_KEYS is set "
                           "(it counts verdicts by label).")
    threshold: float | None = Field(
        None, description="Overrides the bundle's image threshold for every request that "
                          "names none (on the fused image score).")
    batch_max_size: int = Field(
        32, ge=1, le=1024, description="Most images gathered into one model call.")
    batch_wait_ms: float = Field(
        2.0, ge=0, le=1000,
        description="How long the batcher waits for more requests before it runs a batch "
                    "(not at all when no other inspection request is in progress).")
    queue_size: int = Field(
        128, ge=1, description="Most requests waiting for the model; beyond it and one "
                               "running model batch: 503 before the body is read.")
    max_inflight_mb: float = Field(
        512.0, gt=0, description="Memory budget for decoded images being served, in MiB; "
                                 "requests beyond it wait, then get 503; an image over all of "
                                 "it gets 413 (bounds server RSS).")
    header_timeout_s: float = Field(
        10.0, gt=0, description="A connection must send a request's headers within this "
                                "(also how long an idle keep-alive connection stays open).")
    body_timeout_s: float = Field(
        60.0, gt=0, description="A request's whole body must arrive within this after its "
                                "headers; beyond it: 408 and the connection is closed.")
    max_connections: int = Field(
        256, ge=1, description="Most open connections; a request beyond them gets 503.")
    shutdown_timeout_s: float = Field(
        10.0, ge=0, description="How long a stopping server (SIGTERM) lets running requests "
                                "finish before it closes their connections.")
    max_batch_pixels: int = Field(
        256_000_000, ge=1, description="Most pixels of all the images of one "
                                       "/v1/inspect/batch request together.")
    labels_dir: Path | None = Field(
        None, description="With KENSA_RECORDS=off: the folder where POST /v1/labels keeps "
                          "operator-labeled images and labels.csv (for `kensa train "
                          "--labels`); unset: labeling is off. With records on, labels live "
                          "in the records store and this folder's labels.csv is imported "
                          "there once.")
    bundle_key: SecretStr | None = Field(
        None, description="Secret (16+ characters) with which `kensa train` signs bundles "
                          "(HMAC-SHA256) and without which `kensa serve` refuses them; unset: "
                          "bundles are checked against their version id, not signed.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    records: bool = Field(
        True, description="Record every inspected image (KENSA_RECORDS=off turns it off).")
    data_dir: Path = Field(
        Path("kensa-data"), description="Folder of the embedded records database (SQLite), "
                                        "kept images and the records journal.")
    database_url: str | None = Field(
        None, description="Records database, e.g. postgresql+psycopg://user:pw@host/kensa; "
                          "unset: an SQLite file in KENSA_DATA_DIR.")
    keep_images: Literal["all", "abnormal", "none"] = Field(
        "abnormal", description="Which inspected images to keep with their records.")
    image_retention_days: float = Field(
        30.0, gt=0, description="Days an unreviewed record keeps its image.")
    image_store_max_gb: float | None = Field(
        None, gt=0, description="Cap on kept images, in GiB: beyond it the oldest unreviewed "
                                "records lose their images first.")
    record_retention_days: float = Field(
        365.0, gt=0, description="Days a record (and its review) is kept.")
    live_max_age_s: float = Field(
        1.0, ge=0, le=60, description="How old an answer of GET /v1/inspections/live (the "
                                      "operator page's Live view) may be, in seconds: every "
                                      "open page shares one per filter for this long; 0: "
                                      "built for each call.")
    models_dir: Path | None = Field(
        None, description="Models root: PART/VERSION/ bundles with an `active` file per part "
                          "(`kensa train --out MODELS_DIR/PART`); served instead of "
                          "KENSA_MODEL.")
    default_model: str | None = Field(
        None, description="Part served when a request names none (?model=); unset: the only "
                          "part of the models root.")
    max_loaded_models: int = Field(
        4, ge=1, description="Most parts kept loaded at once; the least recently used is "
                             "unloaded beyond it.")
    model_poll_s: float = Field(
        5.0, gt=0, description="How often the server reads the models root's `active` files "
                               "(and new versions) for changes, in seconds.")
    auto_activate: bool = Field(
        False, description="Activate a part's new version as soon as the trainer has "
                           "completed it.")
    challenger: str | None = Field(
        None, description="PART=VERSION: score every image of PART with VERSION too, off the "
                          "answer path, to compare before activating.")
    drift_window: int = Field(
        1000, ge=10, le=100_000, description="Newest records of the served version that score "
                                             "drift (GET /v1/models/{part}/drift, the "
                                             "kensa_drift_* gauges) is computed over.")
    sinks_file: Path | None = Field(
        None, description="YAML file of the sinks (webhook, MQTT, OPC UA) every verdict is "
                          "delivered to, through the records store's outbox; unset: none.")
    sinks_lease_s: float = Field(
        30.0, ge=1, description="Servers sharing one records database: how long one holds a "
                                "sink (delivers it alone) without renewing; after a server "
                                "dies, another takes its sinks over this much later.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("the threshold must be a finite number")
        if value is not None and value < MIN_THRESHOLD:
            raise ValueError(f"KENSA_THRESHOLD must be at least {MIN_THRESHOLD:g} "
                             f"{MIN_THRESHOLD_WHY}")
        return value

    @field_validator("challenger")
    @classmethod
    def _part_equals_version(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^=\s]+=[^=\s]+", value.strip()):
            raise ValueError(f"KENSA_CHALLENGER is {value!r}: write PART=VERSION, e.g. "
                             "screws=864194d272d7097b")
        return value.strip() if value is not None else None

    @field_validator("bundle_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("KENSA_BUNDLE_KEY must have at least 16 characters")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("records", "public_docs", "public_metrics", "auto_activate", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("on", "off"):
            return value.strip().lower() == "on"
        return value

    @field_validator("model", "threshold", "labels_dir", "database_url", "image_store_max_gb",
                     "bundle_key", "sinks_file", "models_dir", "default_model", "challenger",
                     mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # compose passes `KENSA_THRESHOLD=` from .env as an empty string: that means unset
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def max_inflight_bytes(self) -> int:
        return int(self.max_inflight_mb * MB)

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.max_pixels, max_side=self.max_side,
                           min_side=self.min_side, max_aspect=self.max_aspect)

    @property
    def bundle_key_bytes(self) -> bytes | None:
        return self.bundle_key.get_secret_value().encode() if self.bundle_key else None


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
