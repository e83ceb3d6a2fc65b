"""A bundle's fingerprint: the digests of everything that decides an answer, the version id
made from them, an optional HMAC signature, and the check at load that ``bundle.json`` still
matches them.

What decides an answer: the three weights files (by their SHA-256 in ``files``), and in
``bundle.json`` ``model_config`` (network shapes, image preparation), ``calibration``
(thresholds, fusion rule and weight, flips) and ``latent.classes`` (the defect-type names
answers carry). Format 3 records one digest per part in ``digests``; the version id is the
SHA-256 of those digests, so a bundle whose parts changed gets another version, and a
``bundle.json`` edited by hand is refused with the part that changed named. The copies kept for
readers (``thresholds``, ``fusion.rule``/``weight``, ``image_size``, ``channels``) must equal
what they copy, so no field says one thing while the model does another.

Format 2 (bundles written before this file) has no ``digests``: its version, a hash of
``files``, ``calibration`` and ``model_config``, is recomputed and checked, but it does not cover
``latent.classes`` and cannot say which part changed; such a bundle loads with a warning.

The signature is ``hmac-sha256`` over the digests with a key the plant keeps (``kensa train``
signs when ``KENSA_BUNDLE_KEY`` is set, ``kensa serve`` then refuses bundles not signed with it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from pathlib import Path

from .errors import BundleError

log = logging.getLogger(__name__)

LEGACY_FORMAT = 2
SIGNATURE_ALGORITHM = "hmac-sha256"


def _sha256_json(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def parts(info: dict) -> dict[str, object]:
    """The parts of ``bundle.json`` that decide an answer, by the name messages use."""
    return {"model_config": info["model_config"], "calibration": info["calibration"],
            "latent.classes": info["latent"]["classes"]}


def digests(info: dict) -> dict[str, str]:
    """``{weights file or part: SHA-256}`` of everything that decides an answer (the files by
    the hashes ``files`` records; :func:`models.bundle.read_info` checks those first)."""
    out = {f"weights file {name}": digest for name, digest in sorted(info["files"].items())}
    out.update({name: _sha256_json(value) for name, value in parts(info).items()})
    return out


def version_of(recorded: dict[str, str]) -> str:
    """The version id: 16 hex digits of the SHA-256 of the digests."""
    return _sha256_json(recorded)[:16]


def legacy_version(info: dict) -> str:
    """A format-2 bundle's version id (its files, calibration and model config)."""
    return _sha256_json({"files": info["files"], "calibration": info["calibration"],
                         "model_config": info["model_config"]})[:16]


def signature(recorded: dict[str, str], key: bytes) -> str:
    mac = hmac.new(key, json.dumps(recorded, sort_keys=True).encode(), hashlib.sha256)
    return f"{SIGNATURE_ALGORITHM}:{mac.hexdigest()}"


def stamp(info: dict, key: bytes | None = None) -> None:
    """Adds ``digests``, ``version`` and (with ``key``) ``signature`` to a new ``bundle.json``."""
    info["digests"] = digests(info)
    info["version"] = version_of(info["digests"])
    info.pop("signature", None)
    if key:
        info["signature"] = signature(info["digests"], key)


def verify(path: Path, info: dict, key: bytes | None = None) -> None:
    """Refuses a ``bundle.json`` changed since it was written, or not signed with ``key``.

    Raises:
        BundleError: the message names the part that changed, or the signature problem.
    """
    try:
        if info["format_version"] == LEGACY_FORMAT:
            _check_legacy(path, info)
        else:
            _check_digests(path, info)
        _check_copies(path, info)
    except (KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{path}/bundle.json lacks a part its version is made of "
                          f"({type(exc).__name__}: {exc}): retrain the bundle") from None
    _check_signature(path, info, key)


def _changed(path: Path, info: dict, what: str) -> BundleError:
    return BundleError(
        f"{path} was changed after it was written: {what}; answers would differ under the "
        f"version {info.get('version')!r}, so it is refused: copy the original bundle again, "
        "or retrain")


def _check_digests(path: Path, info: dict) -> None:
    recorded, actual = info["digests"], digests(info)
    changed = [name for name in actual if recorded.get(name) != actual[name]]
    if changed:
        raise _changed(path, info, f"{', '.join(changed)} differ{'s' if len(changed) == 1 else ''}"
                                   " from what its version was computed over")
    if info["version"] != version_of(actual):
        raise _changed(path, info, f"its version is not the one its contents give "
                                   f"({version_of(actual)})")


def _check_legacy(path: Path, info: dict) -> None:
    if info["version"] != legacy_version(info):
        raise _changed(path, info, "its weights files, model_config or calibration differ from "
                                   "what its version was computed over (a format-2 bundle "
                                   "records no per-part digests to say which)")
    log.warning("%s is a format-2 bundle: its version covers its weights, model_config and "
                "calibration, not latent.classes (the defect-type names); retrain it to have "
                "everything covered", path)


def _check_copies(path: Path, info: dict) -> None:
    """The fields kept for readers must say what the model uses."""
    cal, cfg = info["calibration"], info["model_config"]
    pairs = [(f"thresholds.{k}", v, f"calibration.{k}", cal.get(k, v))
             for k, v in info.get("thresholds", {}).items()]
    fusion = info.get("fusion", {})
    pairs += [("fusion.rule", fusion.get("rule", cal["fusion"]), "calibration.fusion",
               cal["fusion"]),
              ("fusion.weight", fusion.get("weight", cal["fusion_weight"]),
               "calibration.fusion_weight", cal["fusion_weight"]),
              ("image_size", info.get("image_size", cfg["image_size"]), "model_config.image_size",
               cfg["image_size"]),
              ("channels", info.get("channels", cfg["channels"]), "model_config.channels",
               cfg["channels"])]
    for copy, said, source, used in pairs:
        if said != used:
            raise _changed(path, info, f"{copy} says {said!r} but {source}, the value the model "
                                       f"uses, is {used!r} ({copy} is a copy for readers)")


def _check_signature(path: Path, info: dict, key: bytes | None) -> None:
    if not key:
        return
    given = info.get("signature")
    if not isinstance(given, str) or info["format_version"] == LEGACY_FORMAT:
        raise BundleError(f"{path} is not signed, and KENSA_BUNDLE_KEY is set: only bundles "
                          "trained with that key set are accepted; retrain it with the key")
    if not hmac.compare_digest(given, signature(digests(info), key)):
        raise BundleError(f"{path} is not signed with this KENSA_BUNDLE_KEY: it was signed "
                          "with another key (or its signature was edited); retrain it with "
                          "this key")
