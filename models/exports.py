"""A bundle's exported graphs: ONNX graphs of its networks, written by ``kensa export`` into
``BUNDLE/onnx/``, listed in ``bundle.json``'s ``exports`` section and checked before a runtime
loads them.

Layout and record::

    BUNDLE/onnx/defect.onnx   the reconstruction autoencoder + segmentation head:
                              image (B, C, H, W) -> recon (B, C, H, W), logits (B, 1, H, W);
                              batch, height and width dynamic (the coarse view and kept
                              aspects give other shapes than the full view)
    BUNDLE/onnx/encode.onnx   the VAE's encoder: image (B, C, V, V) -> mu (B, P, D); batch
                              dynamic (the VAE's view is always V x V)
    BUNDLE/onnx/maps.onnx     one inspection's model-resolution maths in one call
                              (:class:`MapGraph`): image, coarse (its coarse view, where the
                              model has one), view (the VAE's), residual_scale (1,) -> maps
                              (B, h, w), scores (B,), mu (B, P, D), recon (B, C, h, w); what
                              the Inspector's torch path computes between and after the
                              network calls, so the onnx runtime makes one call per chunk.
                              Exports made before it lack it: they still run (the Inspector
                              then calls the first two and computes the maps in torch), and
                              ``kensa export`` again adds it.

    bundle.json  "exports": {"onnx": {"files": {path: sha256}, "for_version": VERSION,
                                      "opset", "exporter", "created", "parity",
                                      "signature" (with KENSA_BUNDLE_KEY)}}

Why the graphs are not part of the version id (:mod:`models.fingerprint`): they are a
translation of weights the version already covers, checked at export to give the same outputs
(``parity``), so a bundle keeps its version, its signature and the records made under
it when graphs are added. What protects them instead: ``for_version`` ties them to the
weights they were made from (a graph copied from another bundle, or left from before a
retrain, is refused), the SHA-256 of each file is checked at load (a corrupt or replaced graph
is refused), and with ``KENSA_BUNDLE_KEY`` set an HMAC over both must match, exactly as for the
rest of the bundle.
"""

from __future__ import annotations

import hmac
import inspect
import json
import shutil
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .bundle import Bundle, load_bundle, read_info, sha256, swap_into_place, write_json
from .errors import BundleError
from .fingerprint import signature
from .maps import smoothed_map, two_view_map
from .networks import OnnxNetworks, TorchNetworks
from .preprocess import has_coarse_view, shrink, stride_multiple, vae_input

FORMATS = ("onnx",)
FOLDER = "onnx"
GRAPHS = {"defect": "defect.onnx", "encode": "encode.onnx", "maps": "maps.onnx"}
OPTIONAL = ("maps",)  # absent from exports made before it
OPSET = 17
# the most an exported graph's output may differ from torch's at export, in units of the
# output's largest magnitude (float32 throughout: they agree to about 1e-5)
PARITY_TOLERANCE = 1e-4


class _Encoder(nn.Module):
    """The VAE's latent means alone (its log-variance and decoder serve training only)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x)[0]


class MapGraph(nn.Module):
    """What ``maps.onnx`` holds: the reconstruction map of both views, smoothed
    (:func:`models.maps.two_view_map`, :func:`models.maps.smoothed_map`, the functions the
    Inspector's torch path calls), its maximum, and the VAE's latent means.

    ``forward(image, [coarse,] view, residual_scale)`` -> ``maps (B, h, w)``, ``scores (B,)``,
    ``mu (B, P, D)``, ``recon (B, C, h, w)``; ``coarse`` only where the model has a coarse view
    (its shape is computed outside the graph, :func:`models.preprocess.shrink`, so it is not
    traced into it).
    """

    def __init__(self, model: nn.Module, vae: nn.Module, cfg):
        super().__init__()
        self.model, self.vae, self.cfg = model, vae, cfg
        self.coarse = has_coarse_view(cfg)

    @property
    def inputs(self) -> list[str]:
        return ["image", *(["coarse"] if self.coarse else []), "view", "residual_scale"]

    def forward(self, image: torch.Tensor, *rest: torch.Tensor):
        small, view, scale = rest if self.coarse else (None, *rest)
        amap, recon = two_view_map(self.model, image, small, self.cfg.map_mode, scale)
        maps, scores = smoothed_map(amap, self.cfg.map_sigma)
        return maps, scores, self.vae.encode(view)[0], recon


def export_command(path: str | Path) -> str:
    return f"kensa export --model {path} --format onnx"


def export_onnx(path: str | Path, key: bytes | None = None) -> dict:
    """Writes ONNX graphs of a bundle's networks into ``BUNDLE/onnx/`` and records them in
    ``bundle.json`` (replacing an earlier export). Refuses a graph whose outputs differ from
    torch's by more than ``PARITY_TOLERANCE``.

    Args:
        key: ``KENSA_BUNDLE_KEY``: the bundle must be signed with it, and the graphs are.

    Returns:
        The ``exports.onnx`` record written.
    """
    path = Path(path)
    bundle = load_bundle(path, key)
    tmp = path / f".{FOLDER}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_graphs(tmp, bundle)
        parity = _parity(tmp, bundle)
        files = {f"{FOLDER}/{name}": sha256(tmp / name) for name in GRAPHS.values()}
        swap_into_place(tmp, path / FOLDER)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    record = {"files": files, "for_version": bundle.info["version"], "opset": OPSET,
              "exporter": f"torch {torch.__version__} (TorchScript exporter)",
              "created": datetime.now(UTC).isoformat(timespec="seconds"),
              "parity": parity}
    if key:
        record["signature"] = signature(_signed(record), key)
    _write_record(path, record)
    return record


def _write_graphs(folder: Path, bundle: Bundle) -> None:
    cfg = bundle.cfg
    side = cfg.image_size // stride_multiple(cfg) * stride_multiple(cfg)
    full = torch.rand(1, cfg.channels, side, side)
    view = torch.rand(1, cfg.channels, cfg.vae_image_size, cfg.vae_image_size)
    hw = {0: "batch", 2: "height", 3: "width"}
    _export(bundle.model, full, folder / GRAPHS["defect"], ["recon", "logits"],
            {"image": hw, "recon": hw, "logits": hw})
    _export(_Encoder(bundle.vae), view, folder / GRAPHS["encode"], ["mu"],
            {"image": {0: "batch"}, "mu": {0: "batch"}})
    graph = MapGraph(bundle.model, bundle.vae, cfg)
    example = _map_inputs(graph, full, bundle.cal.residual_scale)
    small = {0: "batch", 2: "small_height", 3: "small_width"}
    axes = {"image": hw, "coarse": small, "view": {0: "batch"}, "residual_scale": {},
            "maps": {0: "batch", 1: "height", 2: "width"}, "scores": {0: "batch"},
            "mu": {0: "batch"}, "recon": hw}
    _export(graph, example, folder / GRAPHS["maps"], ["maps", "scores", "mu", "recon"],
            {k: v for k, v in axes.items() if v and (k != "coarse" or graph.coarse)},
            graph.inputs)


def _map_inputs(graph: MapGraph, x: torch.Tensor, residual_scale: float) -> tuple:
    """:class:`MapGraph`'s inputs for prepared images ``x``, as the Inspector makes them."""
    small = (shrink(x, graph.cfg),) if graph.coarse else ()
    view = vae_input(x, graph.cfg.vae_image_size)
    return (x, *small, view, torch.tensor([residual_scale], dtype=torch.float32))


def _export(module: nn.Module, example: torch.Tensor | tuple, out: Path, outputs: list[str],
            axes: dict, inputs: list[str] | None = None) -> None:
    # the TorchScript exporter: the dynamo one needs onnxscript, and traces these plain
    # convolutional networks no better
    legacy = ({"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters
              else {})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
        example = example if isinstance(example, tuple) else (example,)
        torch.onnx.export(module.cpu().eval(), example, str(out),
                          input_names=inputs or ["image"],
                          output_names=outputs, dynamic_axes=axes, opset_version=OPSET,
                          **legacy)


def _parity(folder: Path, bundle: Bundle) -> dict[str, float]:
    """Largest difference between the graphs' outputs and torch's on random inputs of two
    batch sizes (and, for ``defect``, a non-square shape), relative to the output's largest
    magnitude (at least 1: the logits reach 10 and more, float sums in another order differ
    in their last digits); raises over ``PARITY_TOLERANCE``."""
    cfg, cpu = bundle.cfg, torch.device("cpu")
    nets = OnnxNetworks({k: folder / v for k, v in GRAPHS.items()}, cpu, threads=1)
    ref = TorchNetworks(bundle.model, bundle.vae, cpu)
    m = stride_multiple(cfg)
    gen = torch.Generator().manual_seed(0)
    graph = MapGraph(bundle.model, bundle.vae, cfg)
    worst = {"defect": 0.0, "encode": 0.0, "maps": 0.0}
    with torch.inference_mode():
        for batch, (h, w) in ((1, (2 * m, 3 * m)), (3, (cfg.image_size, cfg.image_size))):
            x = torch.rand(batch, cfg.channels, h, w, generator=gen)
            v = torch.rand(batch, cfg.channels, cfg.vae_image_size, cfg.vae_image_size,
                           generator=gen)
            pairs = [("defect", a.numpy(), b.numpy()) for a, b in zip(nets.defect(x),
                                                                      ref.defect(x))]
            pairs += [("encode", nets.encode(v), ref.encode(v))]
            inputs = _map_inputs(graph, x, bundle.cal.residual_scale)
            feed = {k: a.numpy() for k, a in zip(graph.inputs, inputs)
                    if k in nets.map_inputs}
            got = nets.sessions["maps"].run(None, feed)
            pairs += [("maps", a, b.numpy()) for a, b in zip(got, graph(*inputs))]
            for name, got, want in pairs:
                off = float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max()))
                worst[name] = max(worst[name], off)
    if max(worst.values()) > PARITY_TOLERANCE:
        raise BundleError(f"the exported graphs differ from the torch networks by up to "
                          f"{max(worst.values()):.2g} of their outputs' scale (tolerance "
                          f"{PARITY_TOLERANCE:g}): not written; run with --runtime torch")
    return {k: float(f"{v:.3g}") for k, v in worst.items()}


def _signed(record: dict) -> dict[str, str]:
    return {"for_version": record["for_version"], **record["files"]}


def _write_record(path: Path, record: dict) -> None:
    """Adds ``exports.onnx`` to ``bundle.json`` (a temporary file, then rename): no field its
    version or signature covers changes."""
    info = json.loads((path / "bundle.json").read_text())
    info.setdefault("exports", {})["onnx"] = record
    write_json(path / "bundle.json", info)


def graph_paths(path: str | Path, info: dict, key: bytes | None = None) -> dict[str, Path]:
    """The verified ONNX graphs of a bundle whose ``bundle.json`` (``info``, from
    :func:`models.bundle.read_info`) was checked already: ``{"defect": path, "encode": path}``
    and ``"maps"`` where the export has it (:data:`OPTIONAL`).

    Raises:
        BundleError: no graphs (the message gives the export command), graphs made from
            another version, a file missing or changed, or a missing or wrong signature.
    """
    path = Path(path)
    record = info.get("exports", {}).get("onnx") if isinstance(info.get("exports"), dict) else None
    redo = f"run '{export_command(path)}' again"
    if not isinstance(record, dict):
        raise BundleError(f"{path} has no ONNX graphs for the onnx runtime: export them with "
                          f"'{export_command(path)}', or run with --runtime torch")
    if record.get("for_version") != info.get("version"):
        raise BundleError(f"{path}'s ONNX graphs were exported from version "
                          f"{record.get('for_version')!r}, not this bundle's "
                          f"{info.get('version')!r}: {redo}")
    files = record.get("files", {})
    names = {k: v for k, v in GRAPHS.items()
             if k not in OPTIONAL or f"{FOLDER}/{v}" in files}
    for name in names.values():
        rel = f"{FOLDER}/{name}"
        file = path / rel
        if not file.is_file():
            raise BundleError(f"{path} is incomplete: {rel} is missing; {redo}")
        if sha256(file) != files.get(rel):
            raise BundleError(f"{file} does not match the hash in bundle.json's exports: the "
                              f"graph is corrupt or was replaced, so it is refused; {redo}")
    given = record.get("signature")
    if key and not (isinstance(given, str)
                    and hmac.compare_digest(given, signature(_signed(record), key))):
        raise BundleError(f"{path}'s ONNX graphs are not signed with this KENSA_BUNDLE_KEY: "
                          f"{redo} with the key set")
    return {k: path / FOLDER / v for k, v in names.items()}


def has_graphs(path: str | Path) -> bool:
    """Whether ``bundle.json`` lists ONNX graphs (not whether they check out)."""
    try:
        return "onnx" in read_info(path).get("exports", {})
    except BundleError:
        return False
