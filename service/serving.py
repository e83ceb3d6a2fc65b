"""The parts one server serves and their active versions: loading on first use, the cap on
loaded parts, hot swap, and following the models root's ``active`` files.

A :class:`Served` is one loaded version of one part. A request takes its part's current
``Served`` once, when it starts, and keeps it to the end: the batcher inspects its images with
that inspector and the answer names that version, so a swap never changes a request under
way. A swap loads, verifies and warms the new version beside the old one (one forward pass, in
a worker thread), then replaces one dictionary entry on the event loop, which is atomic for
every request; the old version is freed once its last request has finished.

The process only caches: what is active lives in the models root's files
(:mod:`service.registry`), so every replica follows the same pointer within
``KENSA_MODEL_POLL_S``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from starlette.concurrency import run_in_threadpool

from models.errors import KensaError

from .config import Settings
from .errors import Conflict, InvalidParameter, NotFound
from .monitoring import Metrics
from .registry import ModelsRoot, ModelsRootError

log = logging.getLogger("kensa.service")


@dataclass(frozen=True)
class Served:
    """One loaded version of one part.

    Attributes:
        from_root: the version comes from a models root; answers then name the part.
    """

    part: str
    version: str
    inspector: Any
    from_root: bool = True

    @property
    def info(self) -> dict:
        return self.inspector.info


def warm(inspector) -> None:
    """One forward pass on a blank image (worker thread), so neither a load's first request
    nor a swap pays for the first-call set-up."""
    size = int(inspector.info.get("image_size") or inspector.cfg.image_size)
    channels = int(inspector.info.get("channels") or 3)
    with torch.inference_mode():
        inspector.inspect([np.zeros((size, size, channels), np.float32)])


class Fleet:
    """The served parts. With a models root, parts load on first use and at most
    ``KENSA_MAX_LOADED_MODELS`` stay loaded (the least recently used is dropped; requests
    under way keep theirs); without one, it holds the one bundle the server was started with.

    Args:
        load_version: loads a bundle folder into an inspector (blocking; worker thread).
        root: the models root, or None for one bundle (``single``).
        single: that bundle, already loaded.
    """

    def __init__(self, settings: Settings, load_version: Callable[[Path], Any],
                 root: ModelsRoot | None = None, single: Served | None = None) -> None:
        self.settings = settings
        self.metrics: Metrics | None = None  # the app's, once it starts
        self.load_version = load_version
        self.root = root
        self.loaded: OrderedDict[str, Served] = OrderedDict()
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.refused: dict[str, str] = {}  # part -> version that failed; retried when it changes
        self.seen: dict[str, set[str]] | None = None  # versions on disk (auto-activation)
        self.on_swap: Callable[[Served, Served | None], None] = lambda new, old: None
        self.primary = single.part if single else None
        self.part_names = root.parts() if root is not None else []  # refreshed by each poll
        if single is not None:
            self.loaded[single.part] = single

    # -- which part ------------------------------------------------------------------------
    def parts(self) -> list[str]:
        return self.root.parts() if self.root is not None else list(self.loaded)

    def default_part(self) -> str | None:
        """KENSA_DEFAULT_MODEL, else the only part (as of the last poll: no disk read on a
        request's path)."""
        if self.root is None:
            return self.primary
        if self.settings.default_model:
            return self.settings.default_model
        return self.part_names[0] if len(self.part_names) == 1 else None

    def resolve(self, model: str | None) -> str:
        """The part a request means (``?model=``, else the default).

        Raises:
            NotFound: no such part (404, listing the known ones).
            InvalidParameter: none named and no default (422).
        """
        part = model or self.default_part()
        if part is None:
            raise InvalidParameter(
                f"this server serves several parts ({', '.join(self.part_names)}) and has no "
                "KENSA_DEFAULT_MODEL: name one with the query parameter model=PART")
        if part in self.loaded:
            return part
        if self.root is None:
            raise NotFound(f"no model part {part!r}; this server serves "
                           f"{', '.join(self.loaded)}")
        self.root.part_dir(part)  # 404 with the known parts
        return part

    async def get(self, model: str | None = None) -> Served:
        """The part's active version, loaded (and warmed) on first use."""
        part = self.resolve(model)
        served = self.loaded.get(part)
        if served is None:
            async with self.locks[part]:
                served = self.loaded.get(part)
                if served is None:
                    version = self.root.active(part)
                    if version is None:
                        raise Conflict(f"part {part!r} has no active version: activate one "
                                       f"(kensa models activate {part} VERSION)")
                    served = await self.load(part, version)
                    self.install(served)
        if part in self.loaded:
            self.loaded.move_to_end(part)
        return served

    # -- loading and swapping --------------------------------------------------------------
    async def load(self, part: str, version: str) -> Served:
        """Verifies, loads and warms a version beside what is served (not yet swapped in).

        Raises:
            NotFound: no such part or version.
            Conflict: it is not a valid bundle or does not load (logged and counted).
        """
        try:
            return await run_in_threadpool(self.load_blocking, part, version)
        except NotFound:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure refuses the version, old one stays
            reason = exc if isinstance(exc, Conflict) else Conflict(
                f"version {version!r} of {part!r} cannot be loaded: {exc}")
            self.refuse(part, version, reason)
            raise reason from None

    def refuse(self, part: str, version: str, reason: Exception) -> None:
        """A version not swapped in: a log line and ``kensa_model_refused``."""
        log.error("refused version %s of %s: %s", version, part, reason)
        if self.metrics is not None:
            self.metrics.model_refused.labels(part).inc()

    def load_blocking(self, part: str, version: str) -> Served:
        folder = self.root.verify(part, version, key=self.settings.bundle_key_bytes)
        inspector = self.load_version(folder)
        warm(inspector)
        return Served(part, version, inspector)

    def install(self, served: Served) -> None:
        """Swaps ``served`` in (one assignment) and drops least recently used parts."""
        old = self.loaded.get(served.part)
        self.loaded[served.part] = served
        self.loaded.move_to_end(served.part)
        if old is not None:
            if self.metrics is not None:
                self.metrics.model_swaps.labels(served.part).inc()
            log.info("swapped", extra={"fields": {"part": served.part, "from": old.version,
                                                  "to": served.version}})
        else:
            log.info("loaded", extra={"fields": {"part": served.part,
                                                 "version": served.version}})
        self.on_swap(served, old)
        while len(self.loaded) > self.settings.max_loaded_models:
            victim = next((p for p in self.loaded if p not in (served.part, self.primary)), None)
            if victim is None:
                break
            log.info("unloaded", extra={"fields": {"part": victim}})
            self.loaded.pop(victim)

    async def activate(self, part: str, version: str) -> Served:
        """Makes ``version`` the part's active version: loads and warms it, points the
        ``active`` file at it, swaps it in. On failure the old version stays.

        Raises:
            Conflict: not a valid bundle, or this server serves one bundle (no models root).
        """
        if self.root is None:
            raise Conflict("this server serves one bundle (KENSA_MODEL): start it with "
                           "KENSA_MODELS_DIR to switch versions")
        self.resolve(part)
        async with self.locks[part]:
            served = await self.load(part, version)
            await run_in_threadpool(self.root.set_active, part, version)
            self.install(served)
            self.refused.pop(part, None)
        return served

    # -- following the models root ---------------------------------------------------------
    async def follow(self) -> None:
        """Reads the models root every KENSA_MODEL_POLL_S until cancelled."""
        while True:
            await asyncio.sleep(self.settings.model_poll_s)
            try:
                await self.refresh()
            except Exception:  # a bad poll must not end the polling
                log.exception("reading the models root %s failed", self.root.path)

    async def refresh(self) -> None:
        """One poll: new versions activated (KENSA_AUTO_ACTIVATE), then every loaded part
        whose ``active`` file names another version swapped to it."""
        if self.root is None:
            return
        self.part_names = await run_in_threadpool(self.root.parts)
        if self.settings.auto_activate:
            await run_in_threadpool(self.activate_new_versions)
        for part, served in list(self.loaded.items()):
            try:
                version = await run_in_threadpool(self.root.active, part)
            except NotFound:
                continue  # the part's folder is gone: keep serving what is loaded
            if version in (None, served.version, self.refused.get(part)):
                continue
            async with self.locks[part]:
                if self.loaded.get(part) is not served:
                    continue  # swapped meanwhile (an API activation)
                try:
                    self.install(await self.load(part, version))
                    self.refused.pop(part, None)
                except NotFound as exc:  # the file names no version folder
                    self.refuse(part, version, exc)
                    self.refused[part] = version
                except KensaError:  # refused in load
                    self.refused[part] = version  # not retried until the file changes again

    def activate_new_versions(self) -> None:
        """Points each part's ``active`` file at a version completed since the last look
        (worker thread); the first look only notes what is there."""
        now = {part: {v.name for v in self.root.versions(part)} for part in self.root.parts()}
        before, self.seen = self.seen, now
        if before is None:
            return
        for part, names in now.items():
            new = names - before.get(part, set())
            if not new:
                continue
            newest = [v.name for v in self.root.versions(part) if v.name in new][-1]
            try:
                self.root.verify(part, newest, key=self.settings.bundle_key_bytes)
            except (NotFound, Conflict) as exc:
                self.refuse(part, newest, exc)
                continue
            log.info("auto-activating", extra={"fields": {"part": part, "version": newest}})
            self.root.set_active(part, newest)


def open_root(settings: Settings, load_version: Callable[[Path], Any]) -> Fleet:
    """A fleet on KENSA_MODELS_DIR with its start-up part loaded (blocking): the default
    part, else the first part with an active version.

    Raises:
        ModelsRootError: the root is missing or unreadable, or holds nothing to serve.
    """
    root = ModelsRoot(settings.models_dir)
    root.check()
    fleet = Fleet(settings, load_version, root)
    part = startup_part(fleet)
    fleet.primary = part
    try:
        fleet.loaded[part] = fleet.load_blocking(part, root.active(part))
    except (NotFound, Conflict) as exc:
        raise ModelsRootError(f"the active version of {part!r} cannot be served: {exc}") from None
    if settings.auto_activate:
        fleet.activate_new_versions()  # notes the versions there now
    return fleet


def startup_part(fleet: Fleet) -> str:
    """The part a server loads before it says ready.

    Raises:
        ModelsRootError: KENSA_DEFAULT_MODEL is not a part with an active version, or no part
            has one.
    """
    root = fleet.root
    part = fleet.default_part()
    if part is not None:
        try:
            root.part_dir(part)
        except NotFound as exc:
            raise ModelsRootError(f"KENSA_DEFAULT_MODEL: {exc}") from None
        if root.active(part) is None:
            raise ModelsRootError(f"part {part!r} in {root.path} has no active version: "
                                  f"activate one (kensa models activate {part} VERSION)")
        return part
    for part in root.parts():
        if root.active(part) is not None:
            return part
    raise ModelsRootError(f"KENSA_MODELS_DIR {root.path} holds no part with an active "
                          f"version: train one (kensa train --data DIR --out {root.path}/PART)")
