"""The accuracy half: Kensa and the AE-L2 baseline trained on one dataset with the same budget,
scored with the same metric functions."""

from __future__ import annotations

from pathlib import Path


def accuracy(data: Path, minutes: float, device: str, work: Path,
             epochs: int | None = None) -> dict:
    """Kensa and the AE-L2 baseline on one dataset, same budget (time, and ``epochs`` when
    given), same metrics."""
    from models.config import ModelConfig
    from models.data import open_dataset
    from models.train import train

    from .baseline import train_baseline

    name = data.resolve().name
    bundle = work / name / "kensa"
    print(f"[accuracy] {data}: training Kensa ({minutes:g} min budget) -> {bundle}", flush=True)
    metrics = train(data, bundle, ModelConfig(), train_config(minutes, epochs),
                    device=device, progress=True, name=f"bench-{name}")
    kensa = dict(metrics.get("evaluation") or {})
    kensa["training_seconds"] = round(float(metrics["training"]["seconds"]), 1)
    print(f"[accuracy] {data}: training the AE-L2 baseline ({minutes:g} min budget)",
          flush=True)
    base = train_baseline(data, minutes, device=device, progress=True, epochs=epochs)
    dataset = open_dataset(data)
    baseline = base.evaluate(dataset.test) if dataset.test else {}
    baseline["training_seconds"] = round(base.train_seconds, 1)
    return {"dataset": str(data), "name": name, "bundle": str(bundle),
            "kensa": kensa, "baseline": baseline}


def train_config(minutes: float, epochs: int | None):
    """The trainer's defaults with a time budget, and an epoch bound when given."""
    from models.config import TrainConfig

    return TrainConfig(max_minutes=minutes, **({"epochs": epochs} if epochs else {}))
