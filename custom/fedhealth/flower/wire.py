"""What travels between the Flower apps besides weights: JSON in one string, numbers made plain.

A Flower ``ConfigRecord`` holds scalars and lists of one type; the kit's messages (an EHR profile
with suppressed counts as ``null``, the aligned schema, a site's round metrics) are nested. They
travel as one JSON text under :data:`PAYLOAD`, the weights in an ``ArrayRecord`` (names, dtypes and
shapes kept). Plain Python, so the kit's tests check it without Flower.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

PAYLOAD = "json"  # the ConfigRecord key of the JSON text


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists, non-finite floats as ``None``."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pack(data: Mapping[str, Any]) -> dict[str, str]:
    """``{PAYLOAD: json}`` for a ``ConfigRecord``; raises ``TypeError`` naming a value JSON cannot hold."""
    try:
        return {PAYLOAD: json.dumps(plain(data), allow_nan=False, sort_keys=True)}
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a Flower message payload must be JSON data: {exc}") from exc


def unpack(record: Mapping[str, Any]) -> dict[str, Any]:
    """The data :func:`pack` packed; an empty record is ``{}``.

    Raises:
        ValueError: the record's payload is not a JSON object.
    """
    text = record.get(PAYLOAD)
    if text is None:
        return {}
    data = json.loads(str(text))
    if not isinstance(data, dict):
        raise ValueError(f"the message's '{PAYLOAD}' payload is a JSON {type(data).__name__}, not an object.")
    return data


def metric_record(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """The numeric, finite entries of ``metrics`` (what a Flower ``MetricRecord`` holds)."""
    out: dict[str, float | int] = {}
    for key, value in plain(metrics).items():
        if isinstance(value, bool):
            out[key] = int(value)
        elif isinstance(value, int | float):
            out[key] = value
    return out
