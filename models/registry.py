"""The on-disk model registry: versions side by side, one live pointer, flips that survive a crash.

Layout::

    <root>/<version>/manifest.json     the manifest (models.manifest)
    <root>/<version>/<manifest.file>   the model it describes
    <root>/CURRENT                     the live version (one line), replaced atomically
    <root>/history.jsonl               one JSON line per flip: version, previous, time, reason
    <root>/rolled-back.json            versions an engineer rolled back from: refused until lifted
    <root>/.tmp-*                      a version being added (left behind by a crash: ignored)

A version directory appears only complete: it is written under a temporary name
inside root, fsynced and renamed into place. ``CURRENT`` is replaced with
``os.replace`` after an fsync, so a reader sees the old or the new version, never
an empty pointer. The history is a stack of live versions: a flip pushes, a
rollback pops, so repeated rollbacks walk back through earlier versions. A rollback
also marks the version it leaves as rolled back: a retained announcement of it must
not bring it back after a restart; only a newer version, or an engineer lifting the
mark (``allow``), does.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from models.errors import ManifestError, RegistryError, VersionError
from models.manifest import (
    MANIFEST_NAME,
    Manifest,
    check_version,
    load_manifest,
    verify_model_bytes,
    verify_model_file,
    write_manifest,
)
from qcloop.files import fsync_dir, write_atomically
from qcloop.versions import version_key

CURRENT = "CURRENT"
HISTORY = "history.jsonl"
ROLLED_BACK = "rolled-back.json"
_TMP_PREFIX = ".tmp-"
_LOCK = ".lock"


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"cannot create model registry {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    # ------------------------------------------------------------------ reading
    def versions(self) -> list[str]:
        """Complete versions (a directory with a manifest), oldest first by version order."""
        found = []
        try:
            entries = list(self.root.iterdir())
        except OSError as exc:
            raise RegistryError(f"cannot list model registry {self.root}: {exc}") from exc
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                check_version(entry.name)
            except ManifestError:
                continue
            if (entry / MANIFEST_NAME).is_file():
                found.append(entry.name)
        return sorted(found, key=version_key)

    def version_dir(self, v: str) -> Path:
        try:
            check_version(v)
        except ManifestError as exc:
            raise VersionError(f"not a version name: {v!r}") from exc
        return self.root / v

    def manifest(self, v: str) -> Manifest:
        path = self.version_dir(v) / MANIFEST_NAME
        if not path.parent.is_dir():
            raise VersionError(f"version {v} is not in the model registry {self.root}")
        manifest = load_manifest(path)
        if manifest.version != v:
            raise ManifestError(f"{path}: manifest field 'version' is {manifest.version!r} "
                                f"but the directory is {v!r}")
        return manifest

    def model_path(self, v: str) -> Path:
        return self.version_dir(v) / self.manifest(v).file

    def current_version(self) -> str | None:
        """The live version, or None when none was ever set."""
        path = self.root / CURRENT
        try:
            v = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{path}: cannot read the current-version pointer: {exc}") from exc
        if not v:
            return None
        if not (self.version_dir(v) / MANIFEST_NAME).is_file():
            raise RegistryError(f"{path} names version {v!r}, which is not in the registry {self.root}")
        return v

    def history(self) -> list[dict]:
        """Every recorded flip, oldest first (a torn last line from a crash is skipped)."""
        path = self.root / HISTORY
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{path}: cannot read the flip history: {exc}") from exc
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("version"), str):
                out.append(entry)
        return out

    def previous_version(self) -> str | None:
        """The version that was live before the current one (what a rollback returns to)."""
        current = self.current_version()
        stack = self._live_stack()
        if stack and stack[-1] == current:
            stack.pop()
        known = set(self.versions())
        while stack:
            v = stack.pop()
            if v != current and v in known:
                return v
        return None

    def _live_stack(self) -> list[str]:
        stack: list[str] = []
        for entry in self.history():
            v = entry["version"]
            if entry.get("rollback"):
                while stack and stack[-1] != v:
                    stack.pop()
                if not stack:
                    stack.append(v)
            elif not stack or stack[-1] != v:
                stack.append(v)
        return stack

    # ------------------------------------------------------------------ writing
    def add(self, manifest: Manifest, model_bytes: bytes) -> Path:
        """Store a new version (manifest + model) and return its directory; it is not made current."""
        verify_model_bytes(manifest, model_bytes, source=f"model for version {manifest.version}")
        final = self.version_dir(manifest.version)
        with self._locked():
            if final.exists():
                raise VersionError(f"version {manifest.version} already exists in {self.root}")
            tmp = self.root / f"{_TMP_PREFIX}{manifest.version}-{uuid.uuid4().hex[:8]}"
            try:
                tmp.mkdir()
                with (tmp / manifest.file).open("wb") as fh:
                    fh.write(model_bytes)
                    fh.flush()
                    os.fsync(fh.fileno())
                write_manifest(tmp / MANIFEST_NAME, manifest)
                fsync_dir(tmp)
                os.rename(tmp, final)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if final.exists():
                    raise VersionError(f"version {manifest.version} already exists in {self.root}") from exc
                raise RegistryError(f"cannot add version {manifest.version} to {self.root}: {exc}") from exc
            try:
                fsync_dir(self.root)
            except OSError as exc:
                raise RegistryError(f"version {manifest.version} added to {self.root}, but the folder could not "
                                    f"be synced: {exc}") from exc
        return final

    def set_current(self, v: str, reason: str = "") -> None:
        """Make ``v`` the live version and record the flip."""
        with self._locked():
            self._flip(v, reason, rollback=False)

    def rollback(self, reason: str = "rollback") -> str:
        """Go back to the version live before the current one, mark the one left as rolled back; return it."""
        with self._locked():
            previous = self.previous_version()
            if previous is None:
                raise RegistryError(f"no earlier live version to roll back to in {self.root}")
            left = self.current_version()
            self._flip(previous, reason or "rollback", rollback=True)
            if left is not None:
                self._write_rolled_back(self.rolled_back() | {left})
            return previous

    def rolled_back(self) -> set[str]:
        """Versions rolled back from and not lifted since: an announcement of one of them is refused."""
        path = self.root / ROLLED_BACK
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{path}: cannot read the rolled-back versions: {exc}") from exc
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise RegistryError(f"{path}: must be a JSON list of version names")
        return set(data)

    def allow(self, v: str) -> bool:
        """Lift the rolled-back mark of ``v`` (an engineer's decision); False when it had none."""
        with self._locked():
            marked = self.rolled_back()
            if v not in marked:
                return False
            self._write_rolled_back(marked - {v})
            return True

    def _write_rolled_back(self, versions: set[str]) -> None:
        write_atomically(self.root / ROLLED_BACK, (json.dumps(sorted(versions, key=version_key)) + "\n").encode())

    def _flip(self, v: str, reason: str, rollback: bool) -> None:
        if v not in self.versions():
            raise RegistryError(f"cannot make {v!r} current: it is not in the registry {self.root}")
        # Verified before the pointer moves: a corrupt model must never become live (IntegrityError).
        manifest = self.manifest(v)
        verify_model_file(manifest, self.version_dir(v) / manifest.file)
        try:
            previous = self.current_version()
        except RegistryError:
            previous = None
        write_atomically(self.root / CURRENT, (v + "\n").encode("utf-8"))
        entry: dict[str, Any] = {"version": v, "previous": previous, "reason": reason,
                 "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
        if rollback:
            entry["rollback"] = True
        with (self.root / HISTORY).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise writers (the edge's model watcher and an operator's CLI may both flip)."""
        with (self.root / _LOCK).open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
