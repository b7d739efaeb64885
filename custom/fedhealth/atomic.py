"""Files a site or the server rewrites while a job runs, written so a crash never leaves half of one."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, data: object, *, indent: int | None = 2) -> None:
    """Write ``data`` as JSON to ``path`` atomically: a temporary file beside it, then a rename.

    A process that restarts (or reads while it is written) sees the old file or the new one, never a
    partial one.
    """
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    tmp.replace(path)
