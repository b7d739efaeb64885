"""A decoded-image cache keyed by each file's SHA-256, with a provenance record.

Decoding a large radiograph (JPEG 2000, 2000×2000, 12 bits) and resizing it costs far more than
reading a small array back, so each site keeps the model-ready image of every file it has decoded.
The key is the SHA-256 of the file's bytes plus a digest of the settings that produced the item
(decode settings, size, channels): a changed file or a changed setting is a miss, never a stale hit.
``provenance.json`` maps each source hash to its cached item and the settings, so an auditor can say
which file produced which training input. The cache stays at the site, like the files; its errors
name the cache's own files, never a path (:mod:`fedhealth.data.messages`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from fedhealth.data.messages import SiteDataError

PROVENANCE_FILE = "provenance.json"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_digest(settings: dict) -> str:
    """A short stable digest of JSON-able settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class DecodedCache:
    """Model-ready images and their metadata on disk, one ``.npz`` per (source hash, settings).

    Args:
        root: the cache folder (created on first write).
        settings: everything that shapes the cached item; recorded in the provenance.
    """

    def __init__(self, root: Path, settings: dict) -> None:
        self.root = Path(root)
        self.settings = dict(settings)
        self.digest = settings_digest(self.settings)
        self._provenance: dict | None = None
        self.hits = 0
        self.misses = 0

    def _item(self, sha256: str) -> Path:
        return self.root / self.digest / sha256[:2] / f"{sha256}.npz"

    def get(self, sha256: str) -> tuple[np.ndarray, dict] | None:
        """The cached image and metadata of a source hash, or None."""
        path = self._item(sha256)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                image, meta = data["image"], json.loads(str(data["meta"]))
        except (OSError, ValueError, KeyError):  # a half-written item: decode again
            self.misses += 1
            return None
        self.hits += 1
        return image, meta

    def put(self, sha256: str, image: np.ndarray, meta: dict) -> None:
        """Store an item atomically and record its provenance (call :meth:`flush` to save the record)."""
        path = self._item(sha256)
        tmp = path.with_suffix(".tmp.npz")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, image=image, meta=np.array(json.dumps(meta)))
            tmp.replace(path)
        except OSError as exc:  # its message carries the full path
            raise SiteDataError(
                f"the decoded-image cache cannot be written ({type(exc).__name__}); give the user FLARE runs "
                "as a writable folder in the site's 'image_cache' setting (local/fedhealth_site.json)"
            ) from exc
        self.provenance()["items"][sha256] = {
            "item": str(path.relative_to(self.root)),
            "shape": list(image.shape),
        }

    def provenance(self) -> dict:
        """``{"settings", "digest", "items": {source sha256: {"item", "shape"}}}`` of this setting."""
        if self._provenance is None:
            path = self.root / self.digest / PROVENANCE_FILE
            try:
                loaded = json.loads(path.read_text()) if path.is_file() else {}
            except (OSError, ValueError) as exc:
                raise SiteDataError(
                    f"the image cache's {self.digest}/{PROVENANCE_FILE} cannot be read "
                    f"({type(exc).__name__}); delete that folder of the cache and the site decodes its "
                    "files again"
                ) from exc
            self._provenance = {
                "settings": self.settings,
                "digest": self.digest,
                "items": loaded.get("items", {}),
            }
        return self._provenance

    def flush(self) -> Path:
        """Write the provenance record; returns its path."""
        path = self.root / self.digest / PROVENANCE_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.provenance(), indent=1, sort_keys=True))
        except OSError as exc:
            raise SiteDataError(
                f"the image cache's {PROVENANCE_FILE} cannot be written ({type(exc).__name__}); give the "
                "user FLARE runs as a writable folder in the site's 'image_cache' setting "
                "(local/fedhealth_site.json)"
            ) from exc
        return path
