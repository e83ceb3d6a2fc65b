"""Kensa's pure core: image loading, models, training, calibration, bundles and inference.

Nothing here imports FastAPI or pydantic; the trainer, the server, the benchmarks and the
tests all use this package without side effects.
"""

__version__ = "0.1.0"
