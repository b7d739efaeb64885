"""Formatting helpers shared by the table writers: numbers, signed differences, Markdown tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

HEART_SITES = ("cleveland", "hungary", "switzerland", "va_long_beach")


Row = Sequence[object]


def _minus(text: str) -> str:
    return text.replace("-", "−") if text.startswith("-") else text


def f3(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def f4(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def pm(mean: float, sd: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def pts(delta: float, digits: int = 1) -> str:
    """A difference of two metrics in [0, 1] as signed percentage points."""
    return _minus(f"{delta * 100:+.{digits}f} pts")


def signed(x: float) -> str:
    return _minus(f"{x:+.3f}")


def ratio(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}×"


def nbytes(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n:.0f} B"


def site_label(name: str) -> str:
    return {"va_long_beach": "VA"}.get(name, name.replace("_", " ").title() if "_" in name else name)


def table(header: Row, align: str, rows: Sequence[Row]) -> str:
    """A Markdown table; ``align`` has one letter a column: ``l`` left, ``r`` right."""
    if len(align) != len(header):
        raise ValueError(f"table: {len(header)} columns but alignment {align!r}")
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(str(c) for c in header) + " |", "| " + " | ".join(rule) + " |"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table: a row has {len(row)} cells, the header {len(header)}: {row!r}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def load(results: Path, name: str) -> dict:
    path = results / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: benchmark result missing (run its `make bench-*` target)")
    return json.loads(path.read_text())
