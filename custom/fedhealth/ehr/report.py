"""What a site found in its table: problems by column and file line, counts only, never a value."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SHOWN_LINES = 3


def lines(rows: np.ndarray) -> str:
    """``line(s) 3, 7, 9 (12 in all)`` for 0-based data rows (the header is line 1)."""
    rows = np.flatnonzero(np.asarray(rows)) if np.asarray(rows).dtype == bool else np.asarray(rows)
    shown = ", ".join(str(int(i) + 2) for i in rows[:SHOWN_LINES])
    return f"line(s) {shown}" + (f" ({len(rows)} in all)" if len(rows) > SHOWN_LINES else "")


@dataclass(frozen=True)
class Problem:
    """One kind of problem in one column: ``kind`` is a fixed word (``out_of_range``, ``unknown_code``...)."""

    kind: str
    column: str
    count: int
    where: str
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        kind = self.kind.replace("_", " ")
        return f"column {self.column!r}: {self.count} {kind} value(s){detail} in {self.where}"


@dataclass
class DataReport:
    """Problems, ignored columns and absent features of one file; safe to log and to send as counts."""

    label: str
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    absent_features: list[str] = field(default_factory=list)

    def add(self, kind: str, column: str, bad: np.ndarray, detail: str = "") -> None:
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            self.problems.append(Problem(kind, column, int(bad.sum()), lines(bad), detail))

    def counts(self) -> dict[str, int]:
        """``{kind: number of values}`` over all columns: what the profile sends."""
        out: dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + p.count
        return out

    def lines_out(self) -> list[str]:
        """The report as lines for a log or a terminal."""
        out = [f"{self.label}: {self.rows} row(s)"]
        if self.ignored_columns:
            out.append(f"ignored columns (not in the dictionary): {', '.join(self.ignored_columns)}")
        if self.absent_features:
            out.append(f"features this table does not record: {', '.join(self.absent_features)}")
        out += [str(p) for p in self.problems]
        return out
