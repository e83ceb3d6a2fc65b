"""The latent-space classifier: a Gaussian normal cluster, and label spreading over a graph.

Without labels, an image's verdict is its Mahalanobis distance from the cluster of normal
latent means (a shrunk covariance keeps it stable with few images). With a few operator labels,
label spreading (Zhou et al. 2004) runs over a k-nearest-neighbour graph of labeled and
unlabeled latent points in the cluster's whitened coordinates, so each defect kind gets a
cluster and nearby unlabeled images inherit its name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.semi_supervised import LabelSpreading

from .data import GOOD

ANOMALY = "anomaly"
NEIGHBOURS = 7


@dataclass
class LatentClassifier:
    """State is plain arrays, so it round-trips through safetensors.

    Attributes:
        mean: ``(D,)`` centre of the normal cluster.
        whiten: ``(D, D)`` matrix ``W`` with ``|(z - mean) @ W|`` the Mahalanobis distance.
        points: ``(N, D)`` whitened latent points of the label-spreading graph (empty without
            labels).
        label_dist: ``(N, K)`` class distribution of each graph point after spreading.
        classes: ``K`` class names, ``"good"`` first.
    """

    mean: np.ndarray
    whiten: np.ndarray
    points: np.ndarray
    label_dist: np.ndarray
    classes: list[str]

    @classmethod
    def fit(cls, normal: np.ndarray) -> LatentClassifier:
        """Fits the normal cluster to latent means ``(N, D)`` of normal images."""
        lw = LedoitWolf().fit(normal.astype(np.float64))
        evals, evecs = np.linalg.eigh(lw.covariance_)
        whiten = evecs / np.sqrt(np.maximum(evals, 1e-8))
        d = normal.shape[1]
        return cls(lw.location_.astype(np.float32), whiten.astype(np.float32),
                   np.zeros((0, d), np.float32), np.zeros((0, 1), np.float32), [GOOD])

    @property
    def semi_supervised(self) -> bool:
        return len(self.points) > 0 and len(self.classes) > 1

    def whitened(self, z: np.ndarray) -> np.ndarray:
        return ((z - self.mean) @ self.whiten).astype(np.float32)

    def distance(self, z: np.ndarray) -> np.ndarray:
        """Mahalanobis distance ``(N,)`` of latent means ``(N, D)`` to the normal cluster."""
        return np.linalg.norm(self.whitened(z), axis=1)

    def spread(self, z: np.ndarray, labels: list[str | None]) -> None:
        """Label spreading over latent points ``(N, D)``; ``labels[i]`` is a class name or
        ``None`` for an unlabeled point."""
        names = sorted({lab for lab in labels if lab is not None} - {GOOD})
        self.classes = [GOOD, *names]
        y = np.array([-1 if lab is None else self.classes.index(lab) for lab in labels])
        x = self.whitened(z)
        k = min(NEIGHBOURS, len(x) - 1)
        model = LabelSpreading(kernel="knn", n_neighbors=k, alpha=0.2, max_iter=200)
        model.fit(x, y)
        dist = model.label_distributions_
        if dist.shape[1] < len(self.classes):  # a class sklearn never saw stays at zero
            full = np.zeros((len(x), len(self.classes)))
            full[:, model.classes_[model.classes_ >= 0]] = dist
            dist = full
        self.points, self.label_dist = x, dist.astype(np.float32)

    def class_probabilities(self, z: np.ndarray, leave_out: bool = False) -> np.ndarray:
        """``(N, K)``: mean class distribution of each point's nearest graph neighbours (what
        label spreading's inductive step does with a k-NN kernel). ``leave_out`` ignores graph
        points identical to the query, so a labeled image is not judged by its own label."""
        x = self.whitened(z)
        d2 = ((x[:, None, :] - self.points[None, :, :]) ** 2).sum(-1)
        if leave_out:
            d2[d2 < 1e-10] = np.inf
        k = min(NEIGHBOURS, len(self.points))
        idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
        probs = self.label_dist[idx].mean(1)
        return probs / np.maximum(probs.sum(1, keepdims=True), 1e-8)

    def score(self, z: np.ndarray, distance_scale: float, leave_out: bool = False
              ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Latent anomaly score, distance and cluster name per point.

        Without labels the score is the Mahalanobis distance. With labels it is half the
        spread probability of a defect class plus half the squashed distance
        ``d / (d + distance_scale)``, so an image far from every cluster still scores high.
        ``leave_out``: see :meth:`class_probabilities`.
        """
        dist = self.distance(z)
        if not self.semi_supervised:
            clusters = [GOOD] * len(dist)
            return dist, dist, clusters
        probs = self.class_probabilities(z, leave_out)
        clusters = [self.classes[i] for i in probs.argmax(1)]
        score = 0.5 * (1 - probs[:, 0]) + 0.5 * dist / (dist + distance_scale)
        return score, dist, clusters

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "whiten": self.whiten, "points": self.points,
                "label_dist": self.label_dist}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], classes: list[str]) -> LatentClassifier:
        return cls(state["mean"], state["whiten"], state["points"], state["label_dist"],
                   list(classes))
