"""Small-cell suppression: the one rule for every count a site releases, FLARE-free.

The house rule is that nothing but model updates and aggregate, small-cell-suppressed statistics
leaves a site. A count ``c`` with ``0 < c < min_cell`` is a *small cell* and is sent as ``None``;
zero stays zero (an absent category or class says nothing about a patient). When exactly one cell of
a table is suppressed, the smallest released positive cell goes too (*secondary suppression*: the
released total minus the others would give the lone cell back). This is the threshold rule of
statistical disclosure control (Hundepool et al., *Statistical Disclosure Control*, Wiley 2012,
ch. 4 and 7; the "cell size of at least 5" of cancer registries and of CMS's data-use policy).

The minimum is the site's own setting (``min_cell_count`` in ``local/fedhealth_site.json``,
default :data:`DEFAULT_MIN_CELL`); a job may raise it, never lower it (:func:`effective_min_cell`).
The metric rules built on these counts are in :mod:`fedhealth.privacy.released_metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fedhealth import constants as C
from fedhealth.data.messages import SiteDataError

DEFAULT_MIN_CELL = 5


def is_small(count: int | None, min_cell: int) -> bool:
    """Whether ``count`` is a small cell (``0 < count < min_cell``); ``None`` is not."""
    return count is not None and 0 < count < min_cell


def suppress(count: int, min_cell: int) -> int | None:
    """``count`` itself, or ``None`` when it is a small cell (``0 < count < min_cell``)."""
    return None if is_small(count, min_cell) else int(count)


def suppress_cells(counts: Sequence[int], min_cell: int) -> list[int | None]:
    """One table's cells, small ones ``None``; a lone suppressed cell takes the smallest positive other."""
    cells = [suppress(c, min_cell) for c in counts]
    if cells.count(None) == 1:
        released = [(c, i) for i, c in enumerate(cells) if c]
        if released:
            cells[min(released)[1]] = None
    return cells


def check_min_cell(value: object, *, where: str) -> int:
    """``value`` as a minimum cell count; ``where`` names the file and key (or argument) it came from.

    Raises:
        SiteDataError: ``value`` is not a whole number of at least 1 (``True`` is not a number here).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SiteDataError(f"{where} must be a whole number >= 1")
    return value


def site_min_cell(settings: Mapping[str, object]) -> int:
    """The site's own minimum from its merged settings (:data:`DEFAULT_MIN_CELL` when it sets none).

    Raises:
        SiteDataError: the setting is not a whole number >= 1; the message names the file and key.
    """
    value = settings.get(C.SITE_MIN_CELL_KEY, DEFAULT_MIN_CELL)
    return check_min_cell(value, where=f"local/{C.SITE_CONFIG_FILE}: {C.SITE_MIN_CELL_KEY!r}")


def effective_min_cell(settings: Mapping[str, object], job: int | None = None) -> int:
    """The minimum a site applies: the larger of its own setting and the job's (a job only raises it)."""
    own = site_min_cell(settings)
    if job is None:
        return own
    return max(own, check_min_cell(job, where="the job's min_cell"))


def class_counts(labels: np.ndarray) -> list[tuple[int, int]]:
    """``(positive, negative)`` patients of every yes/no question a split's labels answer.

    1-D labels (binary 0/1, or multi-class indices): one pair per class present, one-vs-rest (a
    binary split gives the same pair twice). 2-D labels (multi-label): one pair per column.
    """
    y = np.asarray(labels)
    n = int(y.shape[0]) if y.ndim else 0
    if y.ndim == 2:
        positives = (y > 0.5).sum(axis=0)
        return [(int(p), n - int(p)) for p in positives]
    y = y.ravel()
    if y.dtype.kind == "f" and np.all((y == 0) | (y == 1)):
        p = int((y > 0.5).sum())
        return [(p, n - p)]
    return [(int(c), n - int(c)) for c in np.unique(y, return_counts=True)[1]]


def small_class_reason(pairs: Sequence[tuple[int | None, int | None]], min_cell: int) -> str | None:
    """Why a class-wise metric on these ``(positive, negative)`` counts is withheld, or ``None``.

    The reason names the minimum, never a count.
    """
    if any(is_small(p, min_cell) for p, _ in pairs):
        return f"fewer than {min_cell} positive patients"
    if any(is_small(n, min_cell) for _, n in pairs):
        return f"fewer than {min_cell} negative patients"
    return None


def small_n_reason(n: int | None, min_cell: int) -> str | None:
    """Why a metric computed on ``n`` patients is withheld (``n < min_cell``), or ``None``."""
    if n is not None and n < min_cell:
        return f"computed on fewer than {min_cell} patients"
    return None
