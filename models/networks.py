"""The network calls of one inspection, run by torch or by onnxruntime.

The :class:`~models.inference.Inspector` calls its networks through two methods only:
``defect(x)`` (the reconstruction autoencoder with its segmentation head) and ``encode(x)``
(the VAE's latent means). :class:`TorchNetworks` runs the bundle's torch modules,
:class:`OnnxNetworks` the ONNX graphs ``kensa export`` wrote of the same modules
(:mod:`models.exports`); everything before and after them (preparing, the anomaly map, the
latent verdict, regions) is the Inspector's one code path whichever runtime runs them.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch

from .errors import BundleError

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx")  # what can run the networks (the bench compares these)
CHOICES = (*RUNTIMES, "auto")  # --runtime / KENSA_RUNTIME: auto is onnx where it can be


def onnxruntime_installed() -> bool:
    """Whether onnxruntime can be imported (``pip install 'kensa[onnx]'``)."""
    return importlib.util.find_spec("onnxruntime") is not None


class TorchNetworks:
    """The bundle's torch modules on ``device`` (bfloat16 autocast on CUDA)."""

    runtime = "torch"
    fused = False  # the Inspector calls defect and encode, and computes the maps itself

    def __init__(self, model: torch.nn.Module, vae: torch.nn.Module, device: torch.device):
        self.model = model.to(device).eval().to(memory_format=torch.channels_last)
        self.vae = vae.to(device).eval()
        self.autocast = device.type == "cuda"

    def defect(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, h, w)`` -> reconstruction ``(B, C, h, w)`` and logits ``(B, 1, h, w)``."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            recon, logits = self.model(x)
        return recon.float(), logits.float()

    def encode(self, x: torch.Tensor) -> np.ndarray:
        """VAE views ``(B, C, V, V)`` -> latent means ``float32 (B, P, D)``."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            return self.vae.encode(x)[0].float().cpu().numpy()


class OnnxNetworks:
    """onnxruntime sessions of a bundle's exported graphs: the CPU provider, or CUDA's when
    the device is CUDA and this onnxruntime build has it. Inputs and outputs pass through
    host memory as numpy arrays.

    With a ``maps`` graph (every export that has one) the Inspector makes one call per chunk,
    :meth:`maps`, and the ``defect`` and ``encode`` sessions are only opened when something
    asks for them (test-time flips, calibration); without it (older exports) the Inspector
    calls :meth:`defect` and :meth:`encode` and computes the maps in torch."""

    runtime = "onnx"

    def __init__(self, graphs: dict[str, Path], device: torch.device, threads: int = 0,
                 spinning: bool = False, level: str = "all"):
        """
        Args:
            graphs: ``{"defect": path, "encode": path}`` and, where exported, ``"maps"``
                (:func:`models.exports.graph_paths`).
            threads: onnxruntime's intra-op threads; 0 lets it take one per core.
            spinning: let idle pool threads spin (onnxruntime's own default): costs another
                process on the same cores its time for nothing (``benchmarks/HISTORY.md``).
            level: graph optimizations, ``basic``, ``extended`` or ``all``.
        """
        try:
            import onnxruntime as ort
        except ModuleNotFoundError:
            raise BundleError("the onnx runtime needs onnxruntime: pip install 'kensa[onnx]', "
                              "or run with --runtime torch") from None
        self.device = device
        self.providers = providers(ort.get_available_providers(), device.type)
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   f"ORT_ENABLE_{level.upper()}")
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spinning else "0")
        options.log_severity_level = 3  # warnings about unused initializers etc. are noise
        self._open = lambda path: ort.InferenceSession(str(path), options,
                                                       providers=self.providers)
        self.graphs = dict(graphs)
        self.fused = "maps" in graphs
        self.sessions = {name: self._open(path) for name, path in graphs.items()
                         if name == "maps" or not self.fused}
        if self.fused:
            self.map_inputs = [i.name for i in self.sessions["maps"].get_inputs()]

    def _session(self, name: str):
        if name not in self.sessions:
            self.sessions[name] = self._open(self.graphs[name])
        return self.sessions[name]

    def _run(self, name: str, x: torch.Tensor) -> list[np.ndarray]:
        return self._session(name).run(None, {"image": host(x)})

    def maps(self, x: torch.Tensor, small: torch.Tensor | None, views: torch.Tensor,
             residual_scale: float) -> list[np.ndarray]:
        """One chunk's model-resolution results in one graph call: prepared inputs
        ``(B, C, h, w)``, their coarse view (``None`` without one) and VAE views -> smoothed
        reconstruction maps ``(B, h, w)``, reconstruction scores ``(B,)``, latent means
        ``(B, P, D)`` and reconstructions ``(B, C, h, w)``, all ``float32`` numpy
        (:class:`models.exports.MapGraph`)."""
        given = {"image": x, "coarse": small, "view": views,
                 "residual_scale": torch.tensor([residual_scale])}
        # the exporter drops an input the graph does not read (residual_scale where
        # map_mode is segmentation)
        feed = {k: host(v) for k, v in given.items() if k in self.map_inputs}
        return self.sessions["maps"].run(None, feed)

    def defect(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`TorchNetworks.defect`."""
        recon, logits = self._run("defect", x)
        return (torch.from_numpy(recon).to(self.device),
                torch.from_numpy(logits).to(self.device))

    def encode(self, x: torch.Tensor) -> np.ndarray:
        """As :meth:`TorchNetworks.encode`."""
        return self._run("encode", x)[0]


def host(x: torch.Tensor) -> np.ndarray:
    """A tensor as the contiguous ``float32`` host array onnxruntime reads (no copy when it
    already is one)."""
    return np.ascontiguousarray(x.detach().float().cpu().numpy())


def providers(available: list[str], device: str) -> list[str]:
    """onnxruntime's execution providers for a torch device type: CUDA's first on ``cuda``
    when the build has it, the CPU's always (the fallback for any op CUDA lacks)."""
    if device == "cuda":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        log.warning("this onnxruntime build has no CUDA provider (pip install "
                    "onnxruntime-gpu): the onnx runtime runs on the CPU")
    return ["CPUExecutionProvider"]
