"""``kensa watch DIR --url URL``: inspect the images cameras drop into a folder.

A file is sent once it is complete: closed after writing (inotify, through watchdog) or its
size and modification time unchanged for ``settle_s`` (writers over FTP or SMB). Its verdict
JSON is written to ``--done`` beside the moved image; a file the server refuses (400, 413,
415, 422: it does not decode, or is too large) moves to ``--failed`` with ``NAME.error.json``.
A 503 or an unreachable server is waited out (``Retry-After``, else doubling up to 30 s) and
the same file is sent again; nothing after it goes first.

The journal (``DIR/.kensa-watch.jsonl``, fsynced) makes a restart safe: before an upload it
notes ``sending`` (name, SHA-256, time), after the answer ``answered`` (with the verdict). On
start, an answered file is finished without a new upload; a file that was being sent is looked
up in the server's records (same source, same SHA-256, since that time): found, its record is
the verdict; not found, it was never inspected and is sent. So a file is neither inspected
twice nor skipped (with records off on the server, a kill between the answer and its journal
line sends that one file again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from .client import ApiError, Client, Unavailable

log = logging.getLogger("kensa.watch")
IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
REFUSED = (400, 413, 415, 422)
JOURNAL = ".kensa-watch.jsonl"


@dataclass(frozen=True)
class WatchConfig:
    folder: Path
    url: str
    done: Path
    failed: Path
    source: str | None = None
    model: str | None = None  # the part of the server's models root (None: its default)
    api_key: str | None = None
    settle_s: float = 1.0
    poll_s: float = 1.0
    max_backoff_s: float = 30.0
    timeout_s: float = 60.0


class Journal:
    """Append-only, fsynced; rewritten at start with only what is unfinished."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.open: dict[str, dict] = {}  # name -> its last entry, while not finished
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: its file is looked at again
                if entry["event"] == "finished":
                    self.open.pop(entry["name"], None)
                else:
                    self.open[entry["name"]] = entry
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in self.open.values()))
        os.replace(tmp, path)

    def note(self, event: str, name: str, **fields) -> None:
        entry = {"event": event, "name": name, **fields}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if event == "finished":
            self.open.pop(name, None)
        else:
            self.open[name] = entry


class Watcher:
    def __init__(self, config: WatchConfig, client: Client | None = None) -> None:
        self.config = config
        for folder in (config.done, config.failed):
            folder.mkdir(parents=True, exist_ok=True)
        self.client = client or Client(config.url, config.api_key, config.timeout_s)
        self.journal = Journal(config.folder / JOURNAL)
        self.wake = threading.Event()
        self.closed: set[str] = set()
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> size, mtime, since
        self._stop = threading.Event()
        self.counts = {"done": 0, "failed": 0}

    # ---------------------------------------------------------------- the loop

    def run(self, once: bool = False) -> dict[str, int]:
        """Watches until :meth:`stop` (or, with ``once``, until the folder is empty)."""
        observer = None if once else self._observe()
        try:
            while not self._stop.is_set():
                ready = self._ready()
                for name in ready:
                    if self._stop.is_set():
                        break
                    self._handle(name)
                if once and not ready and not self._pending():
                    break
                if not ready:
                    self.wake.wait(min(self.config.poll_s, self.config.settle_s / 2))
                    self.wake.clear()
        finally:
            if observer is not None:
                observer.stop()
                observer.join(5)
        return self.counts

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()

    def _observe(self):
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if event.event_type == "closed" and not event.is_directory:
                    watcher.closed.add(Path(event.src_path).name)
                watcher.wake.set()

        observer = Observer()
        observer.schedule(Handler(), str(self.config.folder), recursive=False)
        observer.start()
        return observer

    def _pending(self) -> bool:
        return any(self._candidates())

    def _candidates(self) -> list[os.DirEntry]:
        found = [e for e in os.scandir(self.config.folder)
                 if e.is_file() and not e.name.startswith(".")
                 and e.name.lower().endswith(IMAGES)]
        return sorted(found, key=lambda e: (e.stat().st_mtime_ns, e.name))

    def _ready(self) -> list[str]:
        """The complete files, oldest first: journaled ones, closed ones, and those whose
        size and time stood still for ``settle_s``."""
        now, ready, seen = time.monotonic(), [], {}
        for entry in self._candidates():
            st = entry.stat()
            key = (st.st_size, st.st_mtime_ns)
            before = self._seen.get(entry.name)
            since = before[2] if before and before[:2] == key else now
            seen[entry.name] = (*key, since)
            if entry.name in self.journal.open or (st.st_size > 0 and (
                    entry.name in self.closed or now - since >= self.config.settle_s)):
                ready.append(entry.name)
        self._seen = seen
        return ready

    # ---------------------------------------------------------------- one file

    def _handle(self, name: str) -> None:
        path = self.config.folder / name
        self.closed.discard(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return  # taken away before it was sent
        digest = hashlib.sha256(data).hexdigest()
        entry = self.journal.open.get(name)
        if entry is not None and entry.get("sha256") != digest:
            entry = None  # another file under the same name: a new part
        answer = entry.get("answer") if entry and entry["event"] == "answered" else None
        if answer is None and entry is not None:
            answer = self._recorded(digest, entry["at"])
        if answer is None:
            self.journal.note("sending", name, sha256=digest,
                              at=datetime.now(UTC).isoformat())
            answer = self._send(name, data)
            if answer is None:
                return  # stopping, or failed (moved)
            self.journal.note("answered", name, sha256=digest, answer=answer)
        self._finish(path, answer)
        self.journal.note("finished", name)
        self.counts["done"] += 1

    def _recorded(self, digest: str, since: str) -> dict | None:
        """The server's record of an upload that a kill interrupted, if it was made."""
        start = (datetime.fromisoformat(since) - timedelta(seconds=5)).isoformat()
        cursor = None
        while True:
            try:
                page = self.client.inspections(source=self.config.source, since=start,
                                               limit=500, cursor=cursor)
            except ApiError as exc:
                log.warning("cannot look up earlier uploads (%s): sending again", exc)
                return None
            for item in page.items:
                if item.sha256 == digest:
                    return item.model_dump(mode="json", exclude_none=True)
            if page.next is None:
                return None
            cursor = page.next

    def _send(self, name: str, data: bytes) -> dict | None:
        wait = 1.0
        while not self._stop.is_set():
            try:
                result = self.client.inspect(data, filename=name, source=self.config.source,
                                             model=self.config.model)
                return result.model_dump(mode="json", exclude_none=True)
            except Unavailable as exc:
                pause = exc.retry_after or wait
                log.warning("%s: server busy (%s); again in %.1f s", name, exc.detail, pause)
            except ApiError as exc:
                if exc.status in REFUSED:
                    self._fail(name, exc)
                    return None
                pause = wait
                log.warning("%s: HTTP %d (%s); again in %.1f s", name, exc.status, exc.detail,
                            pause)
            except httpx.TransportError as exc:
                pause = wait
                log.warning("%s: server unreachable (%s); again in %.1f s", name, exc, pause)
            self._stop.wait(pause)
            wait = min(wait * 2, self.config.max_backoff_s)
        return None

    def _fail(self, name: str, exc: ApiError) -> None:
        target = _free(self.config.failed / name)
        shutil.move(self.config.folder / name, target)
        (target.parent / f"{target.name}.error.json").write_text(
            json.dumps({"status": exc.status, "detail": exc.detail}, indent=2))
        self.journal.note("finished", name)
        self.counts["failed"] += 1
        log.error("%s: refused (HTTP %d: %s); moved to %s", name, exc.status, exc.detail,
                  target)

    def _finish(self, path: Path, answer: dict) -> None:
        target = _free(self.config.done / path.name)
        verdict = target.parent / f"{target.name}.json"
        tmp = verdict.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(answer, indent=2))
        os.replace(tmp, verdict)
        shutil.move(path, target)
        log.info("%s: %s (score %.4g)", path.name, answer.get("label"), answer.get("score", 0))


def _free(target: Path) -> Path:
    """``target``, or ``name-1.ext``, ``name-2.ext``... when a file of that name is there."""
    n, candidate = 0, target
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
    return candidate
