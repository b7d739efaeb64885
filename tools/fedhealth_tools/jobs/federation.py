"""A family's ``federation`` block: how many sites, how many a round needs, how long it waits (FLARE-free).

A spec's ``defaults`` may hold, beside ``meta``/``client``/``server``, a ``federation`` section::

    "federation": {"sites": 4, "min_fraction": 0.75,
                   "wait_time_after_min_received": 30, "train_timeout": 300}

A job patches it like any section (``"federation": {"min_fraction": 1.0}``). It is not a file: its
values go where the spec says, through a reference ``{"$federation": "min_clients"}`` in place of a
value (``meta.min_clients``, a training workflow's ``min_clients``, ``wait_time_after_min_received``,
``train_timeout``, an aggregator's site count). ``min_clients`` is derived:
``max(1, ceil(min_fraction * sites))``, so 0.75 of 4 sites is 3: a round, and the job, go on without
one slow or missing site. A workflow that cannot go on without a site keeps a plain number (or its
job sets ``min_fraction`` 1.0), and ``job_specs/README.md`` says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fedhealth_tools.jobs.merge import SpecError

SECTION = "federation"
REFERENCE = "$federation"  # {"$federation": "min_clients"}: that value of the job's federation block
KEYS = ("sites", "min_fraction", "wait_time_after_min_received", "train_timeout")
# A product like 0.7 * 10 = 7.000000000000001 must not round up to 8.
_EPS = 1e-9


def min_clients(sites: int, fraction: float) -> int:
    """``ceil(fraction * sites)``, at least 1: the sites a round (and the job) cannot go on without."""
    return max(1, math.ceil(fraction * sites - _EPS))


def federation_values(block: Any, *, where: str) -> dict[str, int | float]:
    """The block's values, checked, with ``min_clients`` added.

    Raises:
        SpecError: the block is not an object, lacks or adds keys, or holds a value out of range;
            the message starts with ``where`` (the spec file and job).
    """
    if not isinstance(block, Mapping):
        raise SpecError(f"{where}: the federation block must be an object, not {type(block).__name__}.")
    missing = [k for k in KEYS if k not in block]
    unknown = [k for k in block if k not in KEYS]
    if missing or unknown:
        raise SpecError(
            f"{where}: the federation block needs exactly {list(KEYS)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else "")
            + "."
        )
    sites, fraction = block["sites"], block["min_fraction"]
    if not _is_int(sites) or sites < 1:
        raise SpecError(f"{where}: federation sites must be a whole number of sites >= 1, got {sites!r}.")
    if not _is_number(fraction) or not 0 < fraction <= 1:
        raise SpecError(
            f"{where}: federation min_fraction must be a number in (0, 1] (the share of the {sites} sites "
            f"a round needs), got {fraction!r}."
        )
    for key in ("wait_time_after_min_received", "train_timeout"):
        if not _is_int(block[key]) or block[key] < 0:
            raise SpecError(
                f"{where}: federation {key} must be a whole number of seconds >= 0 (0: no limit), "
                f"got {block[key]!r}."
            )
    return {**{k: block[k] for k in KEYS}, "min_clients": min_clients(sites, fraction)}


def resolve(value: Any, values: Mapping[str, Any] | None, *, where: str) -> Any:
    """``value`` with every ``{"$federation": name}`` replaced by ``values[name]``; a copy.

    Raises:
        SpecError: a reference with other keys or an unknown name, or one in a job without a
            federation block (``values`` None); the message names ``where`` and the path in it.
    """
    if isinstance(value, list):
        return [resolve(v, values, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if REFERENCE not in value:
        return {k: resolve(v, values, where=f"{where}.{k}") for k, v in value.items()}
    name = value[REFERENCE]
    if set(value) != {REFERENCE} or not isinstance(name, str):
        raise SpecError(f'{where}: a reference is {{"{REFERENCE}": "name"}} and nothing else.')
    if values is None:
        raise SpecError(f"{where}: {REFERENCE} {name!r} needs a federation block in the spec's defaults.")
    if name not in values:
        raise SpecError(f"{where}: unknown {REFERENCE} {name!r}; use one of {sorted(values)}.")
    return values[name]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
