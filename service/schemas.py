"""Response bodies of the HTTP API (the contract of issue 3), documented for Swagger UI.

Coordinates are pixels of the uploaded image, origin top-left, x to the right, y down.
Scores are unitless; each is compared with the threshold next to it.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

Label = Literal["normal", "abnormal"]
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAA..."  # examples are shortened: real values are whole files
JPEG_B64 = "/9j/4AAQSkZJRgABAQAAAQABAAD..."


class ErrorBody(BaseModel):
    """Every error answer."""

    detail: str = Field(description="What is wrong and how to fix it.",
                        examples=[("the bytes are not a readable image (12 bytes, "
                                   "UnidentifiedImageError): send a PNG, JPEG, BMP or TIFF "
                                   "file (8- or 16-bit; gray, RGB or RGBA)")])


# the answer form of models.results.ReconstructionVerdict (a docstring here would reach OpenAPI)
class ReconstructionOpinion(BaseModel):
    """The reconstruction model's own opinion."""

    score: float = Field(description="Reconstruction anomaly score (unitless).",
                         examples=[0.0123])
    threshold: float = Field(description="The bundle's calibrated reconstruction threshold.",
                             examples=[0.0150])
    label: Label = Field(description="'abnormal' when score >= threshold.",
                         examples=["normal"])


# the answer form of models.results.LatentVerdict
class LatentOpinion(BaseModel):
    """The VAE latent classifier's opinion."""

    label: str = Field(description="'abnormal' when score >= threshold, else 'normal'.",
                       examples=["normal"])
    distance: float = Field(
        description="Mahalanobis distance of the image's most unusual part to the normal "
                    "cluster: the VAE's latent is a grid of codes, one per part of the image, "
                    "each with its own normal cluster (unitless).", examples=[3.2])
    threshold: float = Field(description="The bundle's calibrated latent threshold, on score.",
                             examples=[6.5])
    score: float = Field(
        description="What threshold applies to: the distance itself for a bundle trained "
                    "without labels; with labels, a mix of the spread defect probability and "
                    "the distance (unitless).", examples=[3.2])
    cluster: str = Field(
        description="The defect type label spreading assigned, when the bundle was trained "
                    "with labels; otherwise (or when no label reached this image's "
                    "neighbours) 'good' or 'anomaly', from the latent label.",
        examples=["good"])
    confidence: float = Field(description="How sure the classifier is, 0 to 1.",
                              examples=[0.93])


class Defect(BaseModel):
    """One connected defect region."""

    bbox: list[int] = Field(min_length=4, max_length=4,
                            description="[x, y, w, h] in pixels of the uploaded image.",
                            examples=[[112, 40, 18, 9]])
    area: int = Field(description="Defect pixels in the region (pixels of the upload).",
                      examples=[131])
    score: float = Field(description="Highest pixel anomaly score in the region (unitless).",
                         examples=[0.41])


class InspectionResult(BaseModel):
    """The verdict on one image. The picture fields appear only when asked with ``include``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "0b7e4a0e-3f7c-4c4e-9a59-5c1b8f0d2a11", "model_version": "3f9a1c2b7d4e",
        "label": "abnormal", "score": 0.0312, "threshold": 0.0205, "width": 640,
        "height": 480, "elapsed_ms": 14.2,
        "reconstruction": {"score": 0.0312, "threshold": 0.0205, "label": "abnormal"},
        "latent": {"label": "normal", "distance": 4.1, "threshold": 6.5, "score": 4.1,
                   "cluster": "good", "confidence": 0.8},
        "defects": [{"bbox": [112, 40, 18, 9], "area": 131, "score": 0.41}]}]})

    id: UUID = Field(description="Unique id of this inspection (uuid4); also in the log line.",
                     examples=["0b7e4a0e-3f7c-4c4e-9a59-5c1b8f0d2a11"])
    model_version: str = Field(description="Content-hash id of the bundle that judged.",
                               examples=["3f9a1c2b7d4e"])
    model: str | None = Field(
        None, description="The part (models root, `?model=`) whose version judged; absent on "
                          "a server started on one bundle (KENSA_MODEL).", examples=["screws"])
    label: Label = Field(description="'abnormal' exactly when score >= threshold.",
                         examples=["normal"])
    score: float = Field(description="Fused image anomaly score (unitless; see the bundle's "
                                     "fusion rule in /v1/model).", examples=[0.0123])
    threshold: float = Field(
        description="The image threshold applied to score: the request's `threshold`, else "
                    "KENSA_THRESHOLD, else the bundle's calibrated one.", examples=[0.0205])
    width: int = Field(description="Width of the uploaded image, pixels.", examples=[640])
    height: int = Field(description="Height of the uploaded image, pixels.", examples=[480])
    elapsed_ms: float = Field(
        description="Server time for this image in milliseconds: decoding, waiting for and "
                    "running the model, encoding the pictures.", examples=[14.2])
    reconstruction: ReconstructionOpinion = Field(
        description="The reconstruction model's own verdict.")
    latent: LatentOpinion = Field(description="The VAE latent classifier's own verdict.")
    defects: list[Defect] = Field(
        description="Defect regions (connected parts of the mask), strongest first; empty "
                    "when none.", examples=[[{"bbox": [112, 40, 18, 9], "area": 131,
                                              "score": 0.41}]])
    mask: str | None = Field(
        None, description="With include=mask: base64 PNG, 8-bit, 255 on defect pixels and 0 "
                          "elsewhere, width x height of the upload.",
        examples=[PNG_B64])
    heatmap: str | None = Field(
        None, description="With include=heatmap: base64 PNG, 16-bit grayscale, width x height "
                          "of the upload; value = round(65535 * min(1, s / (2 t))) with s the "
                          "pixel anomaly score and t the pixel threshold, so 32768 is the "
                          "threshold and maps compare across images.", examples=[PNG_B64])
    overlay: str | None = Field(
        None, description="With include=overlay: base64 JPEG of the upload with the heatmap "
                          "in colour and defect contours in red.", examples=[JPEG_B64])
    reconstruction_image: str | None = Field(
        None, description="With include=reconstruction: base64 PNG of the model's cleaned "
                          "image (the denoising view), size of the upload.",
        examples=[PNG_B64])


class BatchItemResult(InspectionResult):
    """One image of a batch that was inspected."""

    filename: str | None = Field(None, description="The uploaded file's name, if it had one.",
                                 examples=["cam3-0001.png"])


class BatchItemError(BaseModel):
    """One image of a batch that could not be inspected; the others are unaffected."""

    filename: str | None = Field(None, description="The uploaded file's name, if it had one.",
                                 examples=["cam3-0002.png"])
    status: int = Field(description="The HTTP status this file alone would have got "
                                    "(400, 413 or 415).", examples=[400])
    error: str = Field(description="What is wrong with this file and how to fix it.",
                       examples=[("the upload is empty (0 bytes): send the bytes of a PNG, "
                                  "JPEG, BMP or TIFF (8- or 16-bit; gray, RGB or RGBA) file")])


class BatchResponse(BaseModel):
    """The verdicts on a batch, in upload order."""

    results: list[BatchItemResult | BatchItemError] = Field(
        description="One entry per uploaded file, in upload order: a result, or an `error`.")


class Thresholds(BaseModel):
    """The bundle's calibrated thresholds (unitless, each on its own score)."""

    image: float = Field(description="On the fused image score.", examples=[0.0205])
    pixel: float = Field(description="On pixel anomaly scores (mask, heatmap).",
                         examples=[0.11])
    reconstruction: float = Field(description="On the reconstruction score.",
                                  examples=[0.0150])
    latent: float = Field(description="On the latent distance.", examples=[6.5])


class ModelInfo(BaseModel):
    """The loaded bundle."""

    model: str | None = Field(
        None, description="The part of the models root it serves; absent on a server "
                          "started on one bundle.", examples=["screws"])
    name: str = Field(description="Bundle name.", examples=["screws"])
    version: str = Field(description="Content-hash id of the bundle.",
                         examples=["3f9a1c2b7d4e"])
    created: str = Field(description="When the bundle was trained (ISO 8601).",
                         examples=["2025-11-27T20:44:00+00:00"])
    image_size: int = Field(description="Side of the square the model sees, pixels; uploads "
                                        "of any size are resized to it and maps resized back "
                                        "(with keep_aspect: the side of a typical training "
                                        "image).", examples=[128])
    keep_aspect: bool = Field(
        default=False,
        description="Whether each upload keeps its aspect ratio, scaled as the training images "
                    "were (`kensa train --aspect keep`, the default), instead of squashed to the "
                    "square; false for bundles trained before it existed.",
        examples=[True])
    channels: int = Field(description="1 (gray) or 3 (RGB).", examples=[1])
    thresholds: Thresholds = Field(description="The calibrated thresholds in the bundle.")
    default_threshold: float = Field(
        description="Image threshold applied when a request names none: KENSA_THRESHOLD if "
                    "set, else thresholds.image.", examples=[0.0205])
    fusion: dict[str, Any] = Field(
        description="How the reconstruction and latent verdicts combine into the image "
                    "score: `rule` and its parameters.",
        examples=[{"rule": "weighted", "weight": 0.8}])
    device: str = Field(description="Where inference runs: cpu or cuda.", examples=["cpu"])
    flips: list[str] = Field(
        default_factory=list,
        description="Test-time flips averaged into every map (`h`, `v`, `hv`; chosen at "
                    "training, `kensa train --flips`); each costs one more forward pass. "
                    "Empty: the image alone.", examples=[["h"]])
    metrics: dict[str, Any] = Field(
        description="The bundle's evaluation metrics (AUROC, AUPRO, F1, ...); empty if it was "
                    "not evaluated, `{\"error\": ...}` if its evaluation failed.",
        examples=[{"image_auroc": 0.98}])
    data: dict[str, Any] = Field(
        default_factory=dict,
        description="What the bundle was trained on: image counts (training, held out, "
                    "skipped), test images by type, and operator labels used "
                    "(`labeled_images`, `labeled_good_trained`: good labels that joined the "
                    "training normals).",
        examples=[{"train_images": 160, "used_train_images": 136, "holdout_images": 24,
                   "labeled_images": 12, "labeled_good_trained": 7}])


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["alive", "ready"] = Field(
        description="'alive' from /health/live, 'ready' from /health/ready.", examples=["ready"])
    model_version: str | None = Field(None, description="The loaded bundle, when ready.",
                                      examples=["3f9a1c2b7d4e"])
    records: Literal["ok", "degraded", "off"] | None = Field(
        None, description="Recording, when ready: 'degraded' while the records database is "
                          "unreachable (records wait in the journal; inspection goes on).",
        examples=["ok"])


class LabelCounts(BaseModel):
    """What the labels folder holds."""

    labels_file: str = Field(
        description="The CSV that `kensa train --labels` reads (on the server's file system).",
        examples=["/labels/labels.csv"])
    total: int = Field(description="Labeled images (each image counted once, by its last label).",
                       examples=[7])
    counts: dict[str, int] = Field(description="Labeled images per label.",
                                   examples=[{"good": 4, "scratch": 3}])


class LabelStored(LabelCounts):
    """One label stored."""

    path: str = Field(description="Where the image was stored, relative to the labels folder "
                                  "(named by the first 32 hex digits of its SHA-256).",
                      examples=["images/3f5c0a9e1b2d4c6f8a0b1c2d3e4f5a6b.png"])
    label: str = Field(description="The label stored: `good` or a defect name.",
                       examples=["scratch"])
    sha256: str = Field(description="SHA-256 of the uploaded bytes.",
                        examples=["3f5c0a9e1b2d4c6f8a0b1c2d3e4f5a6b" * 2])
    new_image: bool = Field(description="False when these exact bytes were labeled before "
                                        "(the new label then replaces the old one).",
                            examples=[True])


# ------------------------------------------------------------------------ records


class Review(BaseModel):
    """What a person said an inspected part really is (the last review; all are kept)."""

    label: str = Field(description="`good` or a defect name.", examples=["scratch"])
    note: str | None = Field(None, description="Free text.", examples=["burr at 3 o'clock"])
    regions: list[list[int]] | None = Field(
        None, description="Defect boxes [x, y, w, h] in pixels of the image, if given.",
        examples=[[[12, 30, 8, 6]]])
    by: str | None = Field(None, description="Who reviewed (X-Kensa-User header).",
                           examples=["operator-3"])
    at: str = Field(description="When (UTC, ISO 8601).", examples=["2026-12-04T10:31:07Z"])


class ReviewRequest(BaseModel):
    """Body of ``PUT /v1/inspections/{id}/review``."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="`good` (a false alarm / a good part) or a defect name "
                                   "(letters, digits, `_`, `-`, `.`; at most 64 characters, "
                                   "starting with a letter or digit).", examples=["scratch"])
    note: str | None = Field(None, max_length=2000, description="Free text.")
    regions: list[list[int]] | None = Field(
        None, description="Defect boxes [x, y, w, h] in pixels of the image; each must lie "
                          "inside it.", examples=[[[12, 30, 8, 6]]])


class InspectionRecord(InspectionResult):
    """A recorded inspection: the inspect answer's fields, where the image came from, whether
    the image was kept, and its review."""

    source: str | None = Field(None, description="Where the image came from.",
                               examples=["line-2/cam-1"])
    part_id: str | None = Field(None, description="The part's own id.", examples=["SN-0042"])
    model_name: str = Field(description="Name of the bundle that judged.", examples=["screws"])
    created_at: str = Field(description="When it was inspected (UTC, ISO 8601).",
                            examples=["2026-12-04T10:30:59.123456Z"])
    image_kept: bool = Field(description="Whether the uploaded image was kept "
                                         "(GET /v1/inspections/{id}/image).")
    sha256: str = Field(description="SHA-256 of the uploaded bytes.")
    review: Review | None = Field(None, description="The last review; null when none.")
    # the pictures of an inspect answer are not recorded: GET .../image and .../overlay
    mask: SkipJsonSchema[str | None] = Field(None, exclude=True)
    heatmap: SkipJsonSchema[str | None] = Field(None, exclude=True)
    overlay: SkipJsonSchema[str | None] = Field(None, exclude=True)
    reconstruction_image: SkipJsonSchema[str | None] = Field(None, exclude=True)


class InspectionPage(BaseModel):
    """One page of records, newest first."""

    items: list[InspectionRecord]
    next: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class Thumbnails(BaseModel):
    """Overlay thumbnails the server has in memory, for the page's Live cards."""

    thumbnails: dict[str, str] = Field(
        description="Record id -> base64 JPEG, as `GET /v1/inspections/{id}/overlay?size=thumb` "
                    "would answer it now.")
    missing: list[str] = Field(
        description="The ids whose thumbnail is not in memory (not drawn yet, another version, "
                    "unknown): fetch each with `GET /v1/inspections/{id}/overlay?size=thumb`.")


class LivePage(Thumbnails):
    """The newest records with the thumbnails of those whose image is kept: the operator
    page's Live view."""

    items: list[InspectionRecord] = Field(description="Newest first.")


class StatsBucket(BaseModel):
    """Counts of one time bucket and source."""

    model_config = ConfigDict(populate_by_name=True)

    bucket: str = Field(description="Start of the bucket (UTC, ISO 8601).")
    bucket_end: str = Field(description="End of the bucket (exclusive).")
    source: str | None = Field(description="The source; null for images sent without one.")
    total: int
    normal: int
    abnormal: int
    reviewed: int
    false_alarms: int = Field(description="Abnormal verdicts reviewed as good.")
    misses: int = Field(description="Normal verdicts reviewed as a defect.")
    yield_: float | None = Field(alias="yield", description="normal / total.")


class Stats(BaseModel):
    bucket: Literal["hour", "day"]
    items: list[StatsBucket]


class ModelVersion(BaseModel):
    """One complete version of a part in the models root."""

    version: str = Field(description="The bundle's version id (its folder's name).",
                         examples=["864194d272d7097b"])
    created: str = Field(description="When it was trained (ISO 8601).",
                         examples=["2026-12-04T10:18:01+00:00"])
    active: bool = Field(description="Whether the part's `active` file names it.")
    metrics: dict[str, Any] = Field(
        description="Its stored evaluation (metrics.json); empty when it was not evaluated.",
        examples=[{"image_auroc": 0.98}])


class ModelPart(BaseModel):
    """A part of the models root: its versions and which one judges."""

    model: str = Field(description="The part's name (its folder).", examples=["screws"])
    active: str | None = Field(description="The active version (the `active` file).",
                               examples=["864194d272d7097b"])
    previous: str | None = Field(description="What a rollback would activate.")
    serving: str | None = Field(description="The version this server judges with now; null "
                                            "when the part is not loaded here.")
    challenger: str | None = Field(None, description="The challenger version, if one runs.")
    versions: list[ModelVersion] = Field(description="Oldest first.")


class ModelsList(BaseModel):
    """The parts this server serves."""

    default: str | None = Field(description="The part used when a request names none.")
    models: list[ModelPart]


class VersionChoice(BaseModel):
    """A version of the part, by its id."""

    version: str = Field(description="A version folder of the part.", min_length=1,
                         max_length=64, examples=["864194d272d7097b"])


class ChallengerReport(BaseModel):
    """How the challenger's verdicts compare with the active version's, since it started."""

    model: str = Field(description="The part.", examples=["screws"])
    version: str = Field(description="The challenger version.")
    active_version: str | None = Field(description="The version judging the answers now.")
    since: str = Field(description="When the challenger started (UTC, ISO 8601).")
    scored: int = Field(description="Images both judged.")
    dropped: int = Field(description="Images the challenger skipped because it was behind.")
    failed: int = Field(description="Images the challenger could not score.")
    waiting: int = Field(description="Images queued for the challenger now.")
    agreement: float | None = Field(description="Share of scored images with the same label.")
    active_labels: dict[str, int] = Field(description="The answers' labels, counted.")
    challenger_labels: dict[str, int] = Field(description="The challenger's labels, counted.")
    disagreements: list[str] = Field(
        description="Ids of the latest (at most 100) images they disagree on, newest first: "
                    "GET /v1/inspections/{id} when records are on.")
    reviewed: int = Field(description="Scored images with a review in the records store.")
    active_accuracy: float | None = Field(
        description="The active version's accuracy on them (review `good` = normal).")
    challenger_accuracy: float | None = Field(description="The challenger's, on the same.")
class DriftEntry(BaseModel):
    """Drift and false alarms of one source's recent records (or of all sources)."""

    records: int = Field(description="Records of the served version in the window.")
    normals: int = Field(description="Of them, judged normal (or reviewed good) and below the "
                                     "threshold: the sample compared.")
    statistic: float | None = Field(
        description="Two-sample Kolmogorov-Smirnov statistic against the held-out normals "
                    "(0: same distribution, 1: disjoint); null when a sample is too small.")
    p_value: float | None = Field(
        description="Two-sided p-value of the statistic: small (say under 0.01) means the "
                    "line's normal parts score differently from the held-out normals.")
    median: float | None = Field(description="Median of the compared recent scores.")
    reason: str | None = Field(description="Why there is no statistic.")
    reviewed: int
    reviewed_good: int
    false_alarms: int = Field(description="Reviewed good but judged abnormal.")
    false_alarm_rate: float | None = Field(description="false_alarms / reviewed_good.")


class DriftSource(DriftEntry):
    source: str | None = Field(description="The source; null for images sent without one.")


class DriftReference(BaseModel):
    images: int = Field(description="Held-out normal scores the bundle keeps.")
    below_threshold: int
    median: float | None


class DriftReport(BaseModel):
    """Whether recent normal parts still score like the bundle's held-out normals."""

    part: str
    version: str = Field(description="The version whose records are compared.")
    window: int = Field(description="The newest records of that version read (KENSA_DRIFT_WINDOW).")
    threshold: float = Field(description="Both samples are compared below this score.")
    reference: DriftReference
    all: DriftEntry = Field(description="Every source together.")
    sources: list[DriftSource]
