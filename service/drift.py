"""Score drift of the parts this server serves, read from the records store.

Why the records store and not a window kept in memory beside the answer path: the store is
truer and costs the answer nothing. Reviews arrive after the verdict (an image judged
abnormal and later reviewed ``good`` is a normal the model scored high, and only the store
knows it); every replica's traffic is there, so all replicas report the same drift (DESIGN
rule 18: state lives in the store); it survives a restart. Its cost is one indexed query of
the newest ``KENSA_DRIFT_WINDOW`` records of the served version per ``GET .../drift`` or
``/metrics`` scrape, off the event loop. Without records (``KENSA_RECORDS=off``) there is no
drift to report (503).

The statistic itself is :mod:`models.drift`.
"""

from __future__ import annotations

import logging
import math

from sqlalchemy.exc import SQLAlchemyError

from models.drift import false_alarm_rate, score_drift
from models.results import ABNORMAL, NORMAL

from .store.records import GOOD

log = logging.getLogger("kensa.drift")

ALL_SOURCES = "*"  # the gauges' source label of every source together


def is_normal(row: dict) -> bool:
    """Reviewed ``good``, or not reviewed and judged normal."""
    review = row["review_label"]
    return review == GOOD if review is not None else row["label"] == NORMAL


def source_report(rows: list[dict], reference: list[float], cut: float) -> dict:
    """Drift and false alarms of one source's records (or every source's)."""
    normals = [r["score"] for r in rows if is_normal(r)]
    good = [r for r in rows if r["review_label"] == GOOD]
    alarms = sum(1 for r in good if r["label"] == ABNORMAL)
    drift = score_drift(reference, normals, cut)
    return {"records": len(rows), "normals": drift.recent, "statistic": drift.statistic,
            "p_value": drift.p_value, "median": drift.recent_median, "reason": drift.reason,
            "reviewed": sum(1 for r in rows if r["review_label"] is not None),
            "reviewed_good": len(good), "false_alarms": alarms,
            "false_alarm_rate": false_alarm_rate(alarms, len(good))}


def drift_report(rows: list[dict], reference: list[float], threshold: float) -> dict:
    """Every source's drift and all sources together, from ``rows`` (newest records of one
    version, :meth:`Records.recent`). Both samples are cut at ``threshold``, the server's
    default: a request that named its own threshold moves its record's verdict, not the cut
    (one request at a low threshold would otherwise empty the comparison)."""
    cut = threshold
    below = [s for s in reference if s < cut]
    by_source: dict[str | None, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    return {"threshold": cut,
            "reference": {"images": len(reference), "below_threshold": len(below),
                          "median": float(sorted(below)[len(below) // 2]) if below else None},
            "all": source_report(rows, reference, cut),
            "sources": [{"source": source, **source_report(group, reference, cut)}
                        for source, group in sorted(by_source.items(),
                                                    key=lambda kv: kv[0] or "")]}


def part_drift(store, served, default_threshold: float | None, window: int) -> dict:
    """The drift report of ``served`` (a :class:`~service.serving.Served`: one loaded version
    of a part), from its version's records (blocking: a database query)."""
    info = served.info
    version = str(info.get("version", ""))
    rows = store.records.recent(version, window)
    threshold = (default_threshold if default_threshold is not None
                 else served.inspector.image_threshold)
    return {"version": version, "window": window,
            **drift_report(rows, [float(s) for s in info.get("holdout_scores", [])],
                           float(threshold))}


def _gauge_value(value: float | None) -> float:
    return math.nan if value is None else float(value)


def set_gauges(metrics, part: str, report: dict) -> None:
    """Sets the drift gauges of ``part`` from its report (``nan`` where there is no value)."""
    entries = [(ALL_SOURCES, report["all"])]
    entries += [(s["source"] or "", s) for s in report["sources"]]
    for source, entry in entries:
        metrics.drift_statistic.labels(part, source).set(_gauge_value(entry["statistic"]))
        metrics.drift_p_value.labels(part, source).set(_gauge_value(entry["p_value"]))
        metrics.drift_false_alarm_rate.labels(part, source).set(
            _gauge_value(entry["false_alarm_rate"]))
        metrics.drift_normals.labels(part, source).set(entry["normals"])


def refresh_gauges(app) -> None:
    """Recomputes the drift gauges of every part loaded here (the fleet's, each at the
    version it serves now; blocking, ``/metrics`` runs it in a worker thread). Without
    records the gauges are absent; with the database away they stay as they were (and the
    failure is logged)."""
    store, fleet = getattr(app.state, "store", None), getattr(app.state, "fleet", None)
    if store is None or fleet is None:
        return
    settings, metrics = app.state.settings, app.state.metrics
    try:
        reports = {part: part_drift(store, served, settings.threshold, settings.drift_window)
                   for part, served in list(fleet.loaded.items())}
    except SQLAlchemyError as exc:
        log.warning("drift gauges not refreshed, records database unreachable: %s", exc)
        return
    for gauge in metrics.drift_gauges():
        gauge.clear()  # a source gone from the window goes from the gauges too
    for part, report in reports.items():
        set_gauges(metrics, part, report)
