"""The latent-space classifier: a Gaussian normal cluster, and label spreading over a graph.

The VAE's latent is a grid of codes, one per part of the image (see :mod:`models.vae`), and
each cell of the grid has its own normal cluster: a Gaussian over the latent means that cell
takes on normal images (a shrunk covariance keeps it stable with few images; parts shot by a
fixed camera sit in the same place, so a cell's normal codes are alike). Without labels, an
image's verdict is the largest Mahalanobis distance of any of its cells from that cell's
cluster. With a few operator labels, label spreading (Zhou et al. 2004) runs over a
k-nearest-neighbour graph of labeled and unlabeled images, each placed at the whitened code of
its most unusual cell (what that part looks like, wherever it is), so each defect kind gets a
cluster and nearby unlabeled images inherit its name. Whether the spread probability also
enters the score is decided at calibration, from the labeled images judged with their labels
hidden, and only on evidence (:meth:`LatentClassifier.choose_spread_weight`).

With ``method="classifier"`` (``kensa train --latent-labels classifier``) the class
probabilities come instead from a small classifier on the same points: one centre per defect
type and one for the normals, a shared per-dimension variance, equal priors (nearest centre in
a diagonal Gaussian sense); it is judged the same way, with labels hidden fold by fold.

Latent means are ``(N, P, D)`` arrays (``P`` cells of ``D`` values); ``(N, D)`` is taken as one
cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.semi_supervised import LabelSpreading

from .data import GOOD
from .metrics import auroc, auroc_gain_interval

ANOMALY = "anomaly"
NEIGHBOURS = 7
SPREAD_WEIGHTS = (0.5, 0.25, 0.0)  # tried in this order: labels get the largest share they earn
FOLDS = 5  # labeled images are checked with their labels hidden, one fifth at a time
# the forms of a semi-supervised latent score (Calibration.latent_score)
LATENT_SCORES = ("mixed", "distance")


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
        graph_labels: ``(N,)`` class index of each graph point's own label, -1 if unlabeled
            (what spreading started from; calibration re-runs it with some labels hidden).
        centres: ``(K, D)`` with the classifier (``method="classifier"``), each class's centre
            among the graph points (empty with label spreading).
        centre_var: ``(D,)`` the classifier's shared per-dimension variance.
    """

    mean: np.ndarray
    whiten: np.ndarray
    points: np.ndarray
    label_dist: np.ndarray
    classes: list[str]
    graph_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    centres: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    centre_var: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @classmethod
    def fit(cls, normal: np.ndarray) -> LatentClassifier:
        """Fits each cell's normal cluster to latent means ``(N, P, D)`` of normal images."""
        normal = _cells(normal)
        means, whitens = [], []
        for p in range(normal.shape[1]):  # float64 one cell at a time: (N, P, D) whole is GBs
            shrunk = LedoitWolf().fit(normal[:, p].astype(np.float64))
            evals, evecs = np.linalg.eigh(shrunk.covariance_)
            means.append(shrunk.location_)
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
        return _by_chunks(z, lambda c: np.linalg.norm(self.whitened(c), axis=2),
                          (len(self.mean),))

    def distance(self, z: np.ndarray) -> np.ndarray:
        """``(N,)``: the largest cell distance of each image (its most unusual part)."""
        return self.cell_distances(z).max(1)

    def descriptor(self, z: np.ndarray) -> np.ndarray:
        """``(N, D)``: the whitened code of each image's most unusual cell, the point that
        stands for the image in the label-spreading graph."""
        def worst_cell(c: np.ndarray) -> np.ndarray:
            w = self.whitened(c)
            return w[np.arange(len(w)), np.linalg.norm(w, axis=2).argmax(1)]

        return _by_chunks(z, worst_cell, (self.mean.shape[1],))

    @property
    def uses_classifier(self) -> bool:
        return self.centres.size > 0

    def spread(self, z: np.ndarray, labels: list[str | None], method: str = "spread") -> None:
        """Label spreading (or, with ``method="classifier"``, the nearest-centre classifier)
        over images' latent means ``(N, P, D)``; ``labels[i]`` is a class name or ``None`` for
        an unlabeled image."""
        names = sorted({lab for lab in labels if lab is not None} - {GOOD})
        self.classes = [GOOD, *names]
        self.graph_labels = np.array([-1 if lab is None else self.classes.index(lab)
                                      for lab in labels], np.int64)
        self.points = self.descriptor(z)
        if method == "classifier":
            self.centres, self.centre_var = _centres(self.points, self.graph_labels,
                                                     len(self.classes))
            self.label_dist = _centre_probabilities(self.points, self.centres, self.centre_var)
        else:
            self.centres = np.zeros((0, self.points.shape[1]), np.float32)
            self.centre_var = np.zeros(0, np.float32)
            self.label_dist = _spread(self.points, self.graph_labels, len(self.classes))

    def class_probabilities(self, z: np.ndarray) -> np.ndarray:
        """``(N, K)``: mean class distribution of each image's nearest graph points (what
        label spreading's inductive step does with a k-NN kernel), or the classifier's."""
        if self.uses_classifier:
            return _centre_probabilities(self.descriptor(z), self.centres, self.centre_var)
        return _neighbour_probabilities(self.descriptor(z), self.points, self.label_dist)

    def held_out_probabilities(self, index: np.ndarray, seed: int = 0) -> np.ndarray:
        """``(len(index), K)``: what :meth:`class_probabilities` gives the graph points
        ``index`` (labeled ones) when nobody labeled them.

        Their labels are dealt into ``FOLDS`` folds (each class spread over the folds), and
        spreading is re-run with one fold's labels hidden at a time. Leaving a point's own
        label out of its neighbour vote is not enough: its neighbours inherited that label
        through the spreading, and a weight chosen that way always favoured the labels (demo
        and magnetic tiles: the choice took 0.5 or 0.25 and the latent AUROC on unlabeled
        images fell, 0.68 -> 0.54).
        """
        index = np.asarray(index, np.int64)
        own = self.graph_labels[index]
        fold = np.zeros(len(index), np.int64)
        rng = np.random.default_rng(seed)
        for c in np.unique(own):
            members = rng.permutation(np.flatnonzero(own == c))
            fold[members] = np.arange(len(members)) % FOLDS
        out = np.zeros((len(index), len(self.classes)), np.float32)
        for f in range(FOLDS):
            hide = fold == f
            if not hide.any():
                continue
            y = self.graph_labels.copy()
            y[index[hide]] = -1
            if self.uses_classifier:
                centres, var = _centres(self.points, y, len(self.classes))
                out[hide] = _centre_probabilities(self.points[index[hide]], centres, var)
                continue
            dist = _spread(self.points, y, len(self.classes))
            out[hide] = _neighbour_probabilities(self.points[index[hide]], self.points, dist)
        return out

    def score(self, z: np.ndarray, distance_scale: float, spread_weight: float = 0.5,
              form: str = "mixed") -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Latent anomaly score, distance and cluster name per image.

        Without labels the score is the distance (:meth:`distance`). With labels it is
        ``spread_weight`` times the spread probability of a defect class plus the rest times
        the squashed distance ``d / (d + distance_scale)``, so an image far from every cluster
        still scores high; with ``form`` ``distance`` (calibration's choice when the labels
        earned the spread no share) the distance itself, and the labels only name the
        clusters.
        """
        dist = self.distance(z)
        if not self.semi_supervised:
            clusters = [GOOD] * len(dist)
            return dist, dist, clusters
        probs = self.class_probabilities(z)
        # an image whose neighbours no label reached gets no cluster name ("" for the caller
        # to decide from the score), not the first class by an argmax over zeros
        clusters = [self.classes[i] if r else "" for i, r in zip(probs.argmax(1), _reached(probs))]
        if form == "distance":
            return dist, dist, clusters
        return _mix(probs, dist, distance_scale, spread_weight), dist, clusters

    def held_out_scores(self, index: np.ndarray, distance_scale: float, spread_weight: float,
                        probs: np.ndarray | None = None, form: str = "mixed") -> np.ndarray:
        """:meth:`score` of the labeled graph points ``index``, their labels hidden;
        ``probs``: their :meth:`held_out_probabilities` if already computed."""
        d = np.linalg.norm(self.points[index], axis=1)  # a descriptor's norm is the distance
        if form == "distance":
            return d
        probs = self.held_out_probabilities(index) if probs is None else probs
        return _mix(probs, d, distance_scale, spread_weight)

    def choose_spread_weight(self, index: np.ndarray, normals: np.ndarray,
                             distance_scale: float,
                             probs: np.ndarray | None = None) -> tuple[float, float]:
        """The ``spread_weight`` of :meth:`score`, from ``SPREAD_WEIGHTS``, for the labeled
        graph points ``index`` and the normal images ``normals`` ``(M, P, D)`` (latent means,
        not graph points). Returns (weight, its AUROC on those images).

        Graph points are scored with their labels hidden (:meth:`held_out_probabilities`;
        ``probs``, if given, are those). Labels earn a share only when it ranks the defects
        among these images above the normals better than the distance alone by more than
        luck: the lower end of a 90 % paired bootstrap interval of the AUROC gain
        (:func:`auroc_gain_interval`) must be above 0; among the weights that pass, the best
        AUROC (ties: the larger weight).

        Why: with few labels the spread probability can be noise or worse (measured on both
        data sets, 2-5 labels per type: 0.45-0.66 AUROC alone on unlabeled images), and a
        weight picked from a handful of labeled images by AUROC alone took 0.5 or 0.25 and
        made the latent verdict worse than no labels at all.
        """
        index = np.asarray(index, np.int64)
        d = np.r_[np.linalg.norm(self.points[index], axis=1), self.distance(normals)]
        probs = self.held_out_probabilities(index) if probs is None else probs
        if len(normals):
            probs = np.concatenate([probs, self.class_probabilities(normals)])
        y = np.r_[(self.graph_labels[index] > 0).astype(int), np.zeros(len(normals), int)]
        base = _mix(probs, d, distance_scale, 0.0)
        chosen, best = 0.0, auroc(y, base)
        for w in SPREAD_WEIGHTS:
            s = _mix(probs, d, distance_scale, w)
            a = auroc(y, s)
            if w > 0 and a > best + 1e-9 and auroc_gain_interval(y, s, base)[0] > 0:
                chosen, best = w, a
        return chosen, best

    def state(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean, "whiten": self.whiten, "points": self.points,
               "label_dist": self.label_dist, "graph_labels": self.graph_labels}
        if self.uses_classifier:  # absent with label spreading: such bundles as before
            out |= {"centres": self.centres, "centre_var": self.centre_var}
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], classes: list[str]) -> LatentClassifier:
        # format-2 bundles written before the graph's own labels were kept lack them
        own = state.get("graph_labels", np.full(len(state["points"]), -1, np.int64))
        latent = cls(state["mean"], state["whiten"], state["points"], state["label_dist"],
                     list(classes), own)
        if "centres" in state:
            latent.centres, latent.centre_var = state["centres"], state["centre_var"]
        return latent


def _cells(z: np.ndarray) -> np.ndarray:
    """Latent means as ``(N, P, D)``: a plain ``(N, D)`` array is one cell."""
    return z[:, None, :] if z.ndim == 2 else z


def _by_chunks(z: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...],
               chunk: int = 1024) -> np.ndarray:
    """``fn`` over latent means ``z`` ``chunk`` images at a time, rows concatenated (``shape``:
    one row's, for an empty ``z``). The whitened codes of every cell are ``(N, P, D)`` floats;
    with two grids (320 cells) and 10,000 images that is 400 MB per copy, and the whole-array
    arithmetic held two (770 MB over the input, measured)."""
    z = _cells(z)
    parts = [fn(z[i:i + chunk]) for i in range(0, len(z), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, *shape), np.float32)


def _spread(x: np.ndarray, y: np.ndarray, classes: int) -> np.ndarray:
    """``(N, classes)`` class distribution of graph points ``x`` after label spreading from
    the labels ``y`` (class index, -1 unlabeled); a class with no label there stays at 0."""
    full = np.zeros((len(x), classes), np.float32)
    if not (y >= 0).any():
        return full
    k = min(NEIGHBOURS, len(x) - 1)
    model = LabelSpreading(kernel="knn", n_neighbors=k, alpha=0.2, max_iter=200)
    model.fit(x, y)
    full[:, model.classes_[model.classes_ >= 0]] = model.label_distributions_
    return full


def _centres(x: np.ndarray, y: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The nearest-centre classifier of graph points ``x`` ``(N, D)`` labeled ``y`` (class
    index, -1 unlabeled): ``(centres (classes, D), variance (D,))``, each class's mean (NaN
    for a class with no labeled point: it gets probability 0) and the pooled within-class
    variance per dimension (floored at a hundredth of its mean)."""
    centres = np.full((classes, x.shape[1]), np.nan, np.float32)
    squares, n = np.zeros(x.shape[1]), 0
    for c in range(classes):
        members = x[y == c].astype(np.float64)
        if len(members):
            centres[c] = members.mean(0)
            squares += ((members - members.mean(0)) ** 2).sum(0)
            n += len(members) - 1
    var = squares / max(n, 1)
    return centres, np.maximum(var, 0.01 * max(var.mean(), 1e-12)).astype(np.float32)


def _centre_probabilities(x: np.ndarray, centres: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``(N, K)``: each point's class probabilities under :func:`_centres`' classifier
    (diagonal Gaussians of a shared variance around the centres, equal priors)."""
    d2 = (((x[:, None, :] - centres[None]) ** 2) / var).sum(2)  # NaN for an empty class
    logits = np.where(np.isnan(d2), -np.inf, -0.5 * d2)
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def _neighbour_probabilities(x: np.ndarray, points: np.ndarray,
                             label_dist: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """``(N, K)``: mean class distribution ``label_dist`` of each of ``x``'s nearest
    ``points``, normalised; a row of zeros where no label reached those points (a part of
    the graph cut off from every labeled image).

    Squared distances come from one matrix product per ``chunk`` rows, so memory stays
    ``chunk x len(points)`` (the broadcast difference took 1,500 x 10,000 x 32 floats, 2 GB,
    when calibrating a 10,000-image bundle)."""
    k = min(NEIGHBOURS, len(points))
    x, points = x.astype(np.float32), points.astype(np.float32)
    sq = (points**2).sum(1)
    out = np.zeros((len(x), label_dist.shape[1]), np.float32)
    for i in range(0, len(x), chunk):
        xc = x[i:i + chunk]
        d2 = (xc**2).sum(1)[:, None] + sq[None, :] - 2 * xc @ points.T
        idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
        out[i:i + chunk] = label_dist[idx].mean(1)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-8)


def _reached(probs: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: which rows of :func:`_neighbour_probabilities` any label reached."""
    return probs.sum(1) > 0


def _mix(probs: np.ndarray, dist: np.ndarray, distance_scale: float,
         spread_weight: float) -> np.ndarray:
    """The semi-supervised latent score (see :meth:`LatentClassifier.score`). Where no label
    reached an image's neighbours (``probs`` all zero) the spread term is replaced by the
    squashed distance, so the image is judged on its distance alone rather than taken for a
    certain defect."""
    squashed = dist / (dist + distance_scale)
    spread = np.where(_reached(probs), 1 - probs[:, 0], squashed)
    return spread_weight * spread + (1 - spread_weight) * squashed
