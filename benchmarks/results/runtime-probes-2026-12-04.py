"""Issue 31 probes, 2026-12-04 (kept as run; not part of the package, no test imports it).

On an exported maps graph (``onnx/maps.onnx`` of a default bundle, 256 px uploads: image
128 px, coarse view 64 px, VAE view 64 px), in interleaved 2 s rounds:

* OpenVINO's CPU plugin in f32 and bf16 against onnxruntime (2 threads, no spinning), with the
  largest difference of the maps from onnxruntime's;
* one onnxruntime session of 2 intra-op threads against two sessions of 1 thread run side by
  side from two Python threads.

Run in a scratch venv (``pip install openvino==2026.4.1 onnxruntime numpy``):
``python benchmarks/results/runtime-probes-2026-12-04.py BUNDLE/onnx/maps.onnx``.
Figures: benchmarks/HISTORY.md, "OpenVINO and two single-thread sessions".
"""

import sys
import threading
import time

import numpy as np
import onnxruntime as ort
import openvino as ov

PATH = sys.argv[1]


def feeds(batch: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(0)
    return {"image": r.random((batch, 3, 128, 128), dtype=np.float32),
            "coarse": r.random((batch, 3, 64, 64), dtype=np.float32),
            "view": r.random((batch, 3, 64, 64), dtype=np.float32),
            "residual_scale": np.array([1.0], np.float32)}


def session(threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(PATH, so, providers=["CPUExecutionProvider"])


def rate(run, batch: int, seconds: float = 2.0) -> float:
    run()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        run()
        n += batch
    return n / (time.perf_counter() - start)


def openvino_rounds() -> None:
    s = session(2)
    core = ov.Core()
    model = core.read_model(PATH)
    requests = {p: core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": p, "INFERENCE_NUM_THREADS": 2,
        "PERFORMANCE_HINT": "LATENCY"}).create_infer_request() for p in ("f32", "bf16")}
    for batch in (1, 8):
        openvino_batch(s, requests, feeds(batch), batch)


def openvino_batch(s, requests: dict, f: dict[str, np.ndarray], batch: int) -> None:
    ref = s.run(None, f)[0]
    for p, req in requests.items():
        diff = float(np.abs(req.infer(f)[0] - ref).max())
        print(f"b{batch} openvino {p}: maps differ by {diff:.2e} (scale "
              f"{float(np.abs(ref).max()):.2f})")
    for n in range(3):
        rates = [f"openvino {p} {rate(lambda r=r: r.infer(f), batch):.1f}"
                 for p, r in requests.items()]
        print(f"b{batch} round {n}: onnxruntime {rate(lambda: s.run(None, f), batch):.1f}, "
              + ", ".join(rates) + " images/s", flush=True)


def side_by_side(sessions: list, f: dict[str, np.ndarray], batch: int) -> float:
    counts, stop = [0] * len(sessions), time.perf_counter() + 2

    def work(i: int) -> None:
        while time.perf_counter() < stop:
            sessions[i].run(None, f)
            counts[i] += batch

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sessions))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def two_sessions_rounds() -> None:
    two, ones = session(2), [session(1), session(1)]
    for batch in (1, 4, 8):
        f = feeds(batch)
        for n in range(3):
            together = rate(lambda f=f: two.run(None, f), batch)
            apart = side_by_side(ones, f, batch)
            print(f"b{batch} round {n}: 1 session x 2 threads {together:.1f}, 2 sessions x 1 "
                  f"thread {apart:.1f} images/s ({apart / together:.2f})", flush=True)


if __name__ == "__main__":
    openvino_rounds()
    two_sessions_rounds()
