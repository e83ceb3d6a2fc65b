"""Kensa's benchmarks (``python -m benchmarks``, alias ``kensa bench``): how good and how
fast, side by side in one run.

Accuracy half (per ``--data`` dataset): train Kensa and the AE-L2 baseline
(:mod:`benchmarks.baseline`) with the same time budget, evaluate both with the same metric
functions, print them side by side.

Speed half (per device: the CPU, and CUDA when present; per upload size in ``--sizes``):

(a) **raw**: :meth:`Inspector.raw_scores` on prepared tensors, at the best batch size (the
    compute limit);
(b) **pipeline**: JPEG bytes -> ``decode_image`` -> ``Inspector.inspect`` -> the service's
    answer (``service.routes.inspect.build_result`` + JSON), without and with the mask and
    heatmap PNGs, at batch 1 and at the best batch; plus a per-stage cost breakdown;
(c) **http**: a real ``kensa serve`` subprocess on 127.0.0.1, 1/8/64 concurrent clients on
    ``/v1/inspect`` and ``/v1/inspect/batch``;

each for every runtime of ``--runtime`` (torch and the exported onnx graphs), with their ratios.

Every measurement is bounded in time (``--seconds``) and in count. Absolute figures depend on
the machine and on whatever else runs on it; the ratios (b)/(a), (c)/(a), (c)/(b) are measured
minutes apart in the same run and are what to compare across machines.

One module per job: :mod:`~benchmarks.accuracy` and :mod:`~benchmarks.baseline` (the accuracy
half), :mod:`~benchmarks.speed` (the speed half) with :mod:`~benchmarks.inprocess` ((a), (b)),
:mod:`~benchmarks.http_load` ((c)), :mod:`~benchmarks.workload`, :mod:`~benchmarks.timing` and
:mod:`~benchmarks.resources`; :mod:`~benchmarks.report` prints and writes the results,
:mod:`~benchmarks.run` runs it all, :mod:`~benchmarks.cli` is the command line;
:mod:`~benchmarks.runtime_options` compares runtime settings and int8 graphs on its own. Not part of the
Docker image: it ships only ``models/`` and ``service/``.
"""
