"""The models root on disk (``KENSA_MODELS_DIR``): parts, their versions, the active pointer,
the activation history, pruning.

Layout::

    MODELS_DIR/
      <part>/                 one kind of part (screws, washers...)
        <version>/            a bundle (models.bundle) named by its version id
        .incoming-<random>/   a version being written: never listed, never loaded
        active                the active version's name, one line (replaced atomically)
        history               one line per activation, "<UTC time> <version>", appended

It lives in ``service/``, not beside ``models/bundle.py``: a bundle knows nothing of parts,
pointers or other versions; this is how a deployment (the trainer, every server replica, the
CLI) shares bundles through one folder. Everything here is plain file IO, safe for several
processes: a version appears by one ``rename``, the pointer changes by one ``os.replace``, a
history line is one ``O_APPEND`` write.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from models.errors import BundleError, KensaError

from .errors import Conflict, NotFound

ACTIVE = "active"
HISTORY = "history"
INCOMING = ".incoming-"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ModelsRootError(KensaError):
    """The models root is missing or cannot be read (stops ``kensa serve``)."""


@dataclass(frozen=True)
class Version:
    """One complete version of a part, as its ``bundle.json`` and ``metrics.json`` say."""

    name: str
    created: str
    metrics: dict = field(default_factory=dict)


class ModelsRoot:
    """A models root folder; every method reads the disk afresh (other processes write it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check(self) -> None:
        """Raises ModelsRootError when the root is not a readable folder."""
        if not self.path.is_dir():
            raise ModelsRootError(
                f"KENSA_MODELS_DIR {self.path} is not a folder: create it and train into it "
                f"('kensa train --data DIR --out {self.path}/PART'), or fix the mount")
        try:
            os.listdir(self.path)
        except OSError as exc:
            raise ModelsRootError(f"KENSA_MODELS_DIR {self.path} cannot be read "
                                  f"({exc.strerror or exc}): fix its permissions or "
                                  "mount") from None

    def parts(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir()
                      if p.is_dir() and NAME.match(p.name))

    def part_dir(self, part: str) -> Path:
        """The part's folder. Raises NotFound (listing the known parts) when there is none."""
        folder = self.path / part
        if not NAME.match(part) or not folder.is_dir():
            known = ", ".join(self.parts()) or "none yet"
            raise NotFound(f"no model part {part!r} in {self.path}; known parts: {known}")
        return folder

    def versions(self, part: str) -> list[Version]:
        """The part's complete versions, oldest first (by creation time, which bundle.json
        gives to the second, then the time its bundle.json was written)."""
        found = []
        for folder in self.part_dir(part).iterdir():
            info = complete_info(folder)
            if info is not None:
                written = (folder / "bundle.json").stat().st_mtime_ns
                found.append((str(info.get("created", "")), written, folder.name,
                              Version(folder.name, str(info.get("created", "")),
                                      stored_evaluation(folder))))
        return [v for *_, v in sorted(found, key=lambda f: f[:3])]

    def active(self, part: str) -> str | None:
        try:
            return (self.part_dir(part) / ACTIVE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def history(self, part: str) -> list[str]:
        """The versions activated, oldest first."""
        try:
            lines = (self.part_dir(part) / HISTORY).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [line.split()[-1] for line in lines if line.strip()]

    def previous(self, part: str) -> str | None:
        """The version active before the current one: what rollback activates."""
        current = self.active(part)
        for version in reversed(self.history(part)):
            if version != current:
                return version
        return None

    def verify(self, part: str, version: str, key: bytes | None = None) -> Path:
        """The version's folder after checking its bundle in full (hashes, signature).

        Raises:
            NotFound: no such part or version (404).
            Conflict: the folder is not a complete, valid bundle, with the reason (409).
        """
        # here, not at the top: listing and pointing need no torch (kensa models list is quick)
        from models.bundle import read_info

        folder = self.part_dir(part) / version
        if not NAME.match(version) or not folder.is_dir():
            known = ", ".join(v.name for v in self.versions(part)) or "none yet"
            raise NotFound(f"part {part!r} has no version {version!r}; its versions: {known}")
        try:
            info = read_info(folder, key=key)
        except BundleError as exc:
            raise Conflict(f"version {version!r} of {part!r} is not a valid bundle: "
                           f"{exc}") from None
        if info.get("version") != version:
            raise Conflict(f"{folder} holds bundle version {info.get('version')!r}, not "
                           f"{version!r}: a version folder is named by its bundle's version id; "
                           "rename it")
        return folder

    def set_active(self, part: str, version: str) -> None:
        """Points ``active`` at ``version`` (temp file + os.replace) and appends it to the
        history. Does not check the bundle: callers :meth:`verify` first."""
        folder = self.part_dir(part)
        tmp = folder / f".{ACTIVE}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            tmp.write_text(version + "\n")
            os.replace(tmp, folder / ACTIVE)
        finally:
            tmp.unlink(missing_ok=True)
        line = f"{datetime.now(UTC).isoformat(timespec='seconds')} {version}\n".encode()
        fd = os.open(folder / HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def prune(self, part: str, keep: int) -> list[str]:
        """Deletes all but the ``keep`` newest versions, never the active one nor the one
        rollback would return to. Returns the deleted versions' names."""
        spared = {self.active(part), self.previous(part)}
        versions = self.versions(part)
        newest = {v.name for v in versions[max(0, len(versions) - keep):]} if keep > 0 else set()
        gone = [v.name for v in versions if v.name not in newest | spared]
        folder = self.part_dir(part)
        for name in gone:
            trash = folder / f"{INCOMING}deleting-{name}"
            os.rename(folder / name, trash)  # out of sight at once, then deleted
            shutil.rmtree(trash, ignore_errors=True)
        return gone


def staging_folder(part_folder: Path) -> Path:
    """Where a new version is written before :func:`publish` renames it into place."""
    part_folder.mkdir(parents=True, exist_ok=True)
    return part_folder / f"{INCOMING}{uuid.uuid4().hex[:12]}"


def publish(staged: Path) -> Path:
    """Renames a complete bundle written at ``staged`` to its version id beside it.

    Raises:
        KensaError: that version exists already (the same weights and calibration); the
            staged copy is removed and the existing version left as it is.
    """
    version = json.loads((staged / "bundle.json").read_text())["version"]
    target = staged.parent / version
    if target.exists():
        shutil.rmtree(staged, ignore_errors=True)
        raise KensaError(f"version {version} already exists in {staged.parent}: this run "
                         "gave the same bundle; nothing was written")
    os.rename(staged, target)
    return target


def is_part_folder(out: Path, models_dir: Path | None) -> bool:
    """Whether ``kensa train --out OUT`` means a part of a models root (a new version
    beneath it) rather than a plain bundle folder (rewritten in place): OUT's parent is
    KENSA_MODELS_DIR, or OUT already holds an ``active`` file or a version folder."""
    if models_dir is not None and out.resolve().parent == Path(models_dir).resolve():
        return True
    if (out / ACTIVE).is_file():
        return True
    return out.is_dir() and any(complete_info(p) is not None for p in out.iterdir())


def complete_info(folder: Path) -> dict | None:
    """``bundle.json`` of a complete version folder (named by its version id, not being
    written), without checking the weights; None for anything else."""
    if not folder.is_dir() or not NAME.match(folder.name):
        return None
    try:
        info = json.loads((folder / "bundle.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("version") != folder.name:
        return None
    return info


def stored_evaluation(folder: Path) -> dict:
    try:
        return json.loads((folder / "metrics.json").read_text()).get("evaluation", {}) or {}
    except (OSError, ValueError, AttributeError):
        return {}
