"""The records store of one server: database, kept images, journal, recorder and pruning,
opened in the app's lifespan and closed with it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from .database import database_url, make_engine, upgrade
from .images import ImageFolder
from .journal import Journal
from .labels import StoreLabels
from .outbox import Outbox
from .recorder import Recorder
from .records import Records
from .retention import Retention, prune

log = logging.getLogger("kensa.store")


@dataclass(frozen=True)
class StoreConfig:
    """What the store needs to know (built from the server's settings)."""

    data_dir: Path
    database_url: str | None = None
    keep_images: str = "abnormal"
    retention: Retention = field(default_factory=Retention)
    prune_interval_s: float = 600.0
    retry_s: float = 2.0
    sinks: tuple[str, ...] = ()  # names of the configured sinks: records are queued for them
    local_sinks: tuple[str, ...] = ()  # those of them whose position is the server's (OPC UA)


class Store:
    """Args:
        config: where things go and the policies.
        on_pending, on_failure: the recorder's metric hooks.
        on_written: called after records reached the database (the sinks' dispatcher).
        on_pruned: called before and after each pruning pass, from its thread (the overlay
            cache then stops vouching for records it has not read since).
    """

    def __init__(self, config: StoreConfig, on_pending=None, on_failure=None,
                 on_written=None, on_pruned=None) -> None:
        self.config = config
        self.on_pruned = on_pruned or (lambda: None)
        self.url = database_url(config.data_dir, config.database_url)
        self.engine: Engine = make_engine(self.url)
        self.records = Records(self.engine, outbox=bool(config.sinks))
        self.outbox = Outbox(self.engine)
        self.images = ImageFolder(Path(config.data_dir) / "images")
        self.journal = Journal(Path(config.data_dir) / "journal" / "records.jsonl")
        self.labels = StoreLabels(self.engine, self.images)
        self.recorder = Recorder(self.records, self.images, self.journal, config.keep_images,
                                 upgrade=lambda: upgrade(self.engine), on_pending=on_pending,
                                 on_failure=on_failure, retry_s=config.retry_s,
                                 on_written=on_written)
        self._stop = threading.Event()
        self._pruner = threading.Thread(target=self._prune_loop, name="kensa-prune",
                                        daemon=True)

    def open(self) -> None:
        """Brings the schema up to date and starts the writer and the pruner. An unreachable
        database does not stop the server: records go to the journal until it answers."""
        try:
            upgrade(self.engine)
            self.recorder.schema_ready = True
        except SQLAlchemyError as exc:
            log.error("records database unreachable at start (%s): journaling until it "
                      "answers", exc)
        self.recorder.start()
        self._pruner.start()

    def close(self) -> None:
        self._stop.set()
        self.recorder.stop()
        if self._pruner.is_alive():
            self._pruner.join(10)
        self.engine.dispose()

    def prune(self) -> dict[str, int]:
        self.on_pruned()
        try:
            done = prune(self.engine, self.images, self.config.retention)
        finally:
            self.on_pruned()
        local = self.config.local_sinks
        done["outbox"] = self.outbox.prune([s for s in self.config.sinks if s not in local],
                                           local=bool(local))
        return done

    def _prune_loop(self) -> None:
        # first pass soon after start, then every interval
        delay = min(30.0, self.config.prune_interval_s)
        while not self._stop.wait(delay):
            delay = self.config.prune_interval_s
            try:
                self.prune()
            except SQLAlchemyError as exc:
                log.warning("pruning skipped, records database unreachable: %s", exc)
            except Exception:
                log.exception("pruning failed")
