"""The last good bundle on disk, so a restart decides before the centre answers, and the time
of the last successful pull, so a restart does not reset the staleness bound."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Stored:
    raw: bytes
    etag: str | None
    pulled_at: float  # wall clock (time.time()) of the last successful pull


class BundleStore:
    """The last good bundle tarball and its pull metadata, in a directory of their own.

    Writes are atomic (a temporary file in the same directory, fsync, ``os.replace``), so a
    crash leaves the previous bundle or the new one, never a torn file. The tarball is verified
    again when loaded: a file changed on disk is refused like one changed on the wire.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.tarball = self.directory / "bundle.tar.gz"
        self.meta = self.directory / "bundle.meta.json"

    def load(self) -> Stored | None:
        try:
            raw = self.tarball.read_bytes()
        except FileNotFoundError:
            return None
        etag, pulled_at = None, 0.0
        try:
            meta = json.loads(self.meta.read_text("utf-8"))
            etag = meta.get("etag") if isinstance(meta.get("etag"), str) else None
            if isinstance(meta.get("pulled_at"), int | float):
                pulled_at = float(meta["pulled_at"])
            if meta.get("sha256") != hashlib.sha256(raw).hexdigest():
                etag, pulled_at = None, 0.0  # metadata of another tarball: pull afresh
        except (OSError, ValueError, AttributeError):
            pass
        return Stored(raw, etag, pulled_at)

    def save(self, raw: bytes, etag: str | None, pulled_at: float | None = None) -> None:
        """Keep ``raw`` as the last good bundle (call only after it verified)."""
        self._write(self.tarball, raw)
        self.touch(raw, etag, pulled_at)

    def touch(self, raw: bytes, etag: str | None, pulled_at: float | None = None) -> None:
        """Record a successful pull (a 304 included) of the bundle ``raw``."""
        meta = {
            "etag": etag,
            "pulled_at": time.time() if pulled_at is None else pulled_at,
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
        self._write(self.meta, json.dumps(meta).encode())

    def _write(self, path: Path, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        try:
            dir_fd = os.open(self.directory, os.O_RDONLY)
        except OSError:  # pragma: no cover - platforms without directory fds
            return
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
