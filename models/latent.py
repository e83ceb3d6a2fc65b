"""The latent-space classifier: a Gaussian normal cluster, and label spreading over a graph.

The VAE's latent is a grid of codes, one per part of the image (see :mod:`models.vae`), and
each cell of the grid has its own normal cluster: a Gaussian over the latent means that cell
takes on normal images (a shrunk covariance keeps it stable with few images; parts shot by a
fixed camera sit in the same place, so a cell's normal codes are alike). Without labels, an
image's verdict is the largest Mahalanobis distance of any of its cells from that cell's
cluster. With a few operator labels, label spreading (Zhou et al. 2004) runs over a
k-nearest-neighbour graph of labeled and unlabeled images, each placed at the whitened code of
its most unusual cell (what that part looks like, wherever it is), so each defect kind gets a
cluster and nearby unlabeled images inherit its name.

Latent means are ``(N, P, D)`` arrays (``P`` cells of ``D`` values); ``(N, D)`` is taken as one
cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.semi_supervised import LabelSpreading

from .data import GOOD
from .metrics import auroc

ANOMALY = "anomaly"
NEIGHBOURS = 7
SPREAD_WEIGHTS = (0.5, 0.25, 0.0)  # tried in this order: labels get the largest share they earn


@dataclass
class LatentClassifier:
    """State is plain arrays, so it round-trips through safetensors.

    Attributes:
        mean: ``(P, D)`` centre of each cell's normal cluster.
        whiten: ``(P, D, D)`` matrices ``W_p`` with ``|(z_p - mean_p) @ W_p|`` cell ``p``'s
            Mahalanobis distance.
        points: ``(N, D)`` descriptors (:meth:`descriptor`) of the label-spreading graph's
            images (empty without labels).
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
        """Fits each cell's normal cluster to latent means ``(N, P, D)`` of normal images."""
        normal = _cells(normal).astype(np.float64)
        means, whitens = [], []
        for p in range(normal.shape[1]):
            lw = LedoitWolf().fit(normal[:, p])
            evals, evecs = np.linalg.eigh(lw.covariance_)
            means.append(lw.location_)
            whitens.append(evecs / np.sqrt(np.maximum(evals, 1e-8)))
        d = normal.shape[2]
        return cls(np.array(means, np.float32), np.array(whitens, np.float32),
                   np.zeros((0, d), np.float32), np.zeros((0, 1), np.float32), [GOOD])

    @property
    def semi_supervised(self) -> bool:
        return len(self.points) > 0 and len(self.classes) > 1

    def whitened(self, z: np.ndarray) -> np.ndarray:
        """``(N, P, D)``: each cell's code in its own cluster's whitened coordinates."""
        return np.einsum("npd,pde->npe", _cells(z) - self.mean, self.whiten).astype(np.float32)

    def cell_distances(self, z: np.ndarray) -> np.ndarray:
        """``(N, P)``: Mahalanobis distance of every cell to its normal cluster."""
        return np.linalg.norm(self.whitened(z), axis=2)

    def distance(self, z: np.ndarray) -> np.ndarray:
        """``(N,)``: the largest cell distance of each image (its most unusual part)."""
        return self.cell_distances(z).max(1)

    def descriptor(self, z: np.ndarray) -> np.ndarray:
        """``(N, D)``: the whitened code of each image's most unusual cell, the point that
        stands for the image in the label-spreading graph."""
        w = self.whitened(z)
        worst = np.linalg.norm(w, axis=2).argmax(1)
        return w[np.arange(len(w)), worst]

    def spread(self, z: np.ndarray, labels: list[str | None]) -> None:
        """Label spreading over images' latent means ``(N, P, D)``; ``labels[i]`` is a class
        name or ``None`` for an unlabeled image."""
        names = sorted({lab for lab in labels if lab is not None} - {GOOD})
        self.classes = [GOOD, *names]
        y = np.array([-1 if lab is None else self.classes.index(lab) for lab in labels])
        x = self.descriptor(z)
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
        x = self.descriptor(z)
        d2 = ((x[:, None, :] - self.points[None, :, :]) ** 2).sum(-1)
        if leave_out:
            d2[d2 < 1e-10] = np.inf
        k = min(NEIGHBOURS, len(self.points))
        idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
        probs = self.label_dist[idx].mean(1)
        return probs / np.maximum(probs.sum(1, keepdims=True), 1e-8)

    def score(self, z: np.ndarray, distance_scale: float, spread_weight: float = 0.5,
              leave_out: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Latent anomaly score, distance and cluster name per image.

        Without labels the score is the distance (:meth:`distance`). With labels it is
        ``spread_weight`` times the spread probability of a defect class plus the rest times
        the squashed distance ``d / (d + distance_scale)``, so an image far from every cluster
        still scores high (weight 0: the labels only name the clusters).
        ``leave_out``: see :meth:`class_probabilities`.
        """
        dist = self.distance(z)
        if not self.semi_supervised:
            clusters = [GOOD] * len(dist)
            return dist, dist, clusters
        probs = self.class_probabilities(z, leave_out)
        clusters = [self.classes[i] for i in probs.argmax(1)]
        score = spread_weight * (1 - probs[:, 0]) + (1 - spread_weight) * dist / (
            dist + distance_scale)
        return score, dist, clusters

    def choose_spread_weight(self, defects: np.ndarray, normals: np.ndarray,
                             distance_scale: float) -> tuple[float, float]:
        """The ``spread_weight`` of :meth:`score`, from ``SPREAD_WEIGHTS``, under which the
        latent means of labeled defect images ``(L, P, D)`` rank above those of normal images
        ``(M, P, D)`` best, each image that is a graph point scored without its own label; ties
        keep the larger weight. Returns (weight, that AUROC).

        Why not a fixed weight: with few labels the spread probability can be noise (measured
        near chance on both data sets, 2-5 labels per type), and a fixed half share then made
        the latent verdict worse than no labels at all.
        """
        z = np.concatenate([_cells(defects), _cells(normals)])
        y = np.r_[np.ones(len(defects), int), np.zeros(len(normals), int)]
        best, chosen = -1.0, SPREAD_WEIGHTS[-1]
        for w in SPREAD_WEIGHTS:
            a = auroc(y, self.score(z, distance_scale, w, leave_out=True)[0])
            if a > best + 1e-9:
                best, chosen = a, w
        return chosen, best

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "whiten": self.whiten, "points": self.points,
                "label_dist": self.label_dist}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], classes: list[str]) -> LatentClassifier:
        return cls(state["mean"], state["whiten"], state["points"], state["label_dist"],
                   list(classes))


def _cells(z: np.ndarray) -> np.ndarray:
    """Latent means as ``(N, P, D)``: a plain ``(N, D)`` array is one cell."""
    return z[:, None, :] if z.ndim == 2 else z
