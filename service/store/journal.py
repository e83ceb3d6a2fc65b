"""The append-only journal: records that could not reach the database wait here, in order.

One JSON object per line in ``KENSA_DATA_DIR/journal/records.jsonl``; every append is one
batch, written and fsynced before that batch's answers go out. Servers that share the data
folder share the file under an exclusive ``flock``. Draining reads every line, hands them to
the database (which ignores ids it already has, so a crash mid-drain writes nothing twice) and
empties the file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

TIMES = ("created_at", "reviewed_at")


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    @contextmanager
    def _locked(self, mode: str) -> Iterator:
        with open(self.path, mode) as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield fh
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def append(self, rows: list[dict]) -> None:
        """Appends ``rows`` (record column values) as one batch, fsynced."""
        text = "".join(json.dumps(_encode(r), separators=(",", ":")) + "\n" for r in rows)
        with self._locked("a") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def pending(self) -> int:
        """Records waiting (lines in the file)."""
        with open(self.path, "rb") as fh:
            return sum(1 for line in fh if line.strip())

    def drain(self, write: Callable[[list[dict]], None], chunk: int = 500) -> int:
        """Hands every waiting record, in order and in chunks, to ``write`` (which must be
        idempotent on the record id), then empties the journal. When ``write`` raises, the
        journal is left whole (the next drain starts again from the top; written ids are
        skipped). Returns how many records were handed over."""
        with self._locked("r+") as fh:
            rows = [_decode(json.loads(line)) for line in fh if line.strip()]
            for start in range(0, len(rows), chunk):
                write(rows[start:start + chunk])
            fh.seek(0)
            fh.truncate()
            fh.flush()
            os.fsync(fh.fileno())
        return len(rows)


def _encode(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _decode(row: dict) -> dict:
    for key in TIMES:
        if isinstance(row.get(key), str):
            row[key] = datetime.fromisoformat(row[key])
    return row
