"""The site sets the floor, not the job: what a train request must meet before a site trains.

A job names its batch size, local steps and optimizer; the server sends the learning rate with every
task. With ``batch_size 1``, one SGD step and a large learning rate, a logistic-regression update is
``ΔW = −lr (p − y) x``, ``Δb = −lr (p − y)``: the server reads the patient's record as ``ΔW / Δb``.
So each site keeps its own floor in its local settings (:func:`fedhealth.data.site_data.site_settings`:
``local/fedhealth_site.json.default`` from provisioning, under the hospital's ``local/fedhealth_site.json``):

.. code-block:: json

    {"limits": {"min_batch_size": 16, "min_examples_per_round": 16, "max_learning_rate": 1.0,
                "allow_submit_model": true, "require_dp": false},
     "scope_limits": {"strict": {"allow_submit_model": false}},
     "dp_max_epsilon": 4.0}

* ``min_batch_size``: the job's local batch size must be at least this.
* ``min_examples_per_round``: distinct patients that contribute to one update,
  ``min(n_train, batch_size × planned steps)``, must be at least this. Default 16, one minimum batch:
  with the defaults every update mixes at least 16 patients even where a job trains one step, or
  where the whole training set is smaller than a batch (a site with fewer rows than this never
  trains), and a site that lowers its batch floor keeps it. 16 is above the small-cell thresholds
  health statistics publish under (10 or 11 people) and below the smallest shipped hospital
  (switzerland, 30 training rows), which trains one epoch at batch 16 (``min(30, 16 × 2) = 30``).
* ``max_learning_rate``: the learning rate the server sends (its absolute value) must not exceed this.
* ``allow_submit_model``: whether the site sends its locally trained weights for cross-site evaluation.
* ``require_dp``: the job must train with DP-SGD (the executor's ``dp`` settings) at a target ε no
  larger than the site's own ``dp_max_epsilon``, which must then be set.

``scope_limits`` apply over ``limits`` when the job runs under that privacy scope (the site's
``privacy.json``). Defaults apply where nothing is set: they ARE the floor. The floors make the
one-step inversion above impossible, but they are not a privacy guarantee (a dishonest server can
still craft models that single out patients); the guarantee is DP (``require_dp``, or the ``strict``
scope's :class:`fedhealth.filters.dp_update.DPUpdate`). Nothing here reads patient data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fedhealth.constants import (
    SITE_CONFIG_FILE,
    SITE_DP_MAX_EPSILON_KEY,
    SITE_LIMITS_KEY,
    SITE_POLICY_DECLINED,
    SITE_SCOPE_LIMITS_KEY,
)
from fedhealth.data.site_data import SiteDataError, settings_layers


@dataclass(frozen=True)
class Limits:
    """One set of limits (the defaults are the kit's floor)."""

    min_batch_size: int = 16
    min_examples_per_round: int = 16
    max_learning_rate: float = 1.0
    allow_submit_model: bool = True
    require_dp: bool = False


LIMIT_KEYS = tuple(f.name for f in fields(Limits))
DEFAULT_SOURCE = f"fedhealth default, a site sets it in local/{SITE_CONFIG_FILE} {SITE_LIMITS_KEY}"


def check_limit(key: str, value: object, where: str) -> object:
    """``value`` if it is valid for the limit ``key``; else a :class:`SiteDataError` naming ``where``.

    ``where`` names the file and the key, e.g. ``local/fedhealth_site.json: limits.min_batch_size``.
    """
    if key not in LIMIT_KEYS:
        raise SiteDataError(f"{where} is not a limit; the limits are {list(LIMIT_KEYS)}")
    if key in ("allow_submit_model", "require_dp"):
        if not isinstance(value, bool):
            raise SiteDataError(f"{where} must be true or false, got {value!r}")
    elif key == "max_learning_rate":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
            raise SiteDataError(f"{where} must be a positive finite number, got {value!r}")
        value = float(value)
    elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SiteDataError(f"{where} must be a whole number of at least 1, got {value!r}")
    return value


@dataclass(frozen=True)
class EffectiveLimits:
    """The limits a job meets at this site under one scope, each with the file that set it."""

    scope: str
    values: Limits
    sources: Mapping[str, str]
    dp_max_epsilon: float | None = None
    dp_source: str = ""


@dataclass(frozen=True)
class TrainRequest:
    """What a train task would do at this site (the job's settings and the server's learning rate)."""

    batch_size: int
    steps: int
    n_train: int
    learning_rate: float
    dp_target_epsilon: float | None = None  # None: the job trains without DP-SGD

    @property
    def examples(self) -> int:
        """Distinct patients that can contribute to the update: ``min(n_train, batch_size × steps)``."""
        return min(int(self.n_train), int(self.batch_size) * int(self.steps))


@dataclass(frozen=True)
class SiteLimits:
    """A site's limits with their sources: ``{key: (value, source)}`` overall and per scope."""

    base: Mapping[str, tuple[object, str]]
    scopes: Mapping[str, Mapping[str, tuple[object, str]]]
    dp_max_epsilon: tuple[float | None, str] = (None, "")

    @classmethod
    def from_layers(cls, layers: list[tuple[str, Mapping]]) -> SiteLimits:
        """From :func:`fedhealth.data.site_data.settings_layers` (the winning file last); checks every value.

        Raises:
            SiteDataError: an unknown limit, a value of the wrong type or range, or ``require_dp``
                without ``dp_max_epsilon``; the message names the file and the key.
        """
        base: dict[str, tuple[object, str]] = {k: (getattr(Limits(), k), DEFAULT_SOURCE) for k in LIMIT_KEYS}
        scopes: dict[str, dict[str, tuple[object, str]]] = {}
        cap: tuple[float | None, str] = (None, "")
        for label, settings in layers:
            for key, value in (settings.get(SITE_LIMITS_KEY) or {}).items():
                where = f"{label} {SITE_LIMITS_KEY}"
                base[key] = (check_limit(key, value, f"{label}: {SITE_LIMITS_KEY}.{key}"), where)
            for scope, limits in (settings.get(SITE_SCOPE_LIMITS_KEY) or {}).items():
                for key, value in limits.items():
                    where = f"{label} {SITE_SCOPE_LIMITS_KEY}.{scope}"
                    checked = check_limit(key, value, f"{label}: {SITE_SCOPE_LIMITS_KEY}.{scope}.{key}")
                    scopes.setdefault(str(scope), {})[key] = (checked, where)
            if SITE_DP_MAX_EPSILON_KEY in settings:
                cap = (_check_epsilon(settings[SITE_DP_MAX_EPSILON_KEY], label), label)
        limits = cls(base=base, scopes=scopes, dp_max_epsilon=cap)
        for scope in ["", *scopes]:
            effective = limits.for_scope(scope)
            if effective.values.require_dp and effective.dp_max_epsilon is None:
                raise SiteDataError(
                    f"{effective.sources['require_dp']}: require_dp needs this site's own "
                    f"{SITE_DP_MAX_EPSILON_KEY!r} (the largest epsilon it accepts) in "
                    f"local/{SITE_CONFIG_FILE}"
                )
        return limits

    def for_scope(self, scope: str | None) -> EffectiveLimits:
        """``limits`` with ``scope_limits[scope]`` over them (a scope without an entry: ``limits``)."""
        merged = {**self.base, **self.scopes.get(scope or "", {})}
        return EffectiveLimits(
            scope=scope or "",
            values=Limits(**{k: v for k, (v, _) in merged.items()}),
            sources={k: s for k, (_, s) in merged.items()},
            dp_max_epsilon=self.dp_max_epsilon[0],
            dp_source=self.dp_max_epsilon[1],
        )

    def to_dict(self) -> dict:
        """``{"limits": {...}, "scope_limits": {...}}`` of the effective values (kit reports, logs)."""
        return {
            SITE_LIMITS_KEY: {k: v for k, (v, _) in self.base.items()},
            SITE_SCOPE_LIMITS_KEY: {s: asdict(self.for_scope(s).values) for s in self.scopes},
            SITE_DP_MAX_EPSILON_KEY: self.dp_max_epsilon[0],
        }


def _check_epsilon(value: object, label: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise SiteDataError(
            f"{label}: {SITE_DP_MAX_EPSILON_KEY!r} must be a positive number of epsilon, got {value!r}"
        )
    return float(value)


def site_limits(site_root: Path) -> SiteLimits:
    """The limits of the site at ``site_root`` (its two settings files; the defaults where unset)."""
    return SiteLimits.from_layers(settings_layers(site_root))


def check_train(request: TrainRequest, limits: EffectiveLimits) -> list[str]:
    """Every reason the site declines ``request`` (empty: it may train). No patient value in any."""
    v, src, out = limits.values, limits.sources, []
    if not request.batch_size >= v.min_batch_size:
        out.append(
            f"{SITE_POLICY_DECLINED}: batch_size {request.batch_size} is below this site's "
            f"min_batch_size {v.min_batch_size} ({src['min_batch_size']})"
        )
    if not request.examples >= v.min_examples_per_round:
        out.append(
            f"{SITE_POLICY_DECLINED}: an update would mix {request.examples} patients (batch_size "
            f"{request.batch_size} x {request.steps} steps, at most the site's training rows), below this "
            f"site's min_examples_per_round {v.min_examples_per_round} ({src['min_examples_per_round']})"
        )
    if not abs(request.learning_rate) <= v.max_learning_rate:
        out.append(
            f"{SITE_POLICY_DECLINED}: learning rate {request.learning_rate:g} is above this site's "
            f"max_learning_rate {v.max_learning_rate:g} ({src['max_learning_rate']})"
        )
    if v.require_dp:
        scope = f" under scope {limits.scope!r}" if limits.scope else ""
        if request.dp_target_epsilon is None:
            out.append(
                f"{SITE_POLICY_DECLINED}: this site requires DP-SGD{scope} (require_dp, {src['require_dp']}) "
                "and the job trains without the executor's dp settings"
            )
        elif not request.dp_target_epsilon <= (limits.dp_max_epsilon or 0.0):
            out.append(
                f"{SITE_POLICY_DECLINED}: the job's DP-SGD target_epsilon {request.dp_target_epsilon:g} is "
                f"above this site's {SITE_DP_MAX_EPSILON_KEY} {limits.dp_max_epsilon:g} ({limits.dp_source})"
            )
    return out


def check_submit_model(limits: EffectiveLimits) -> list[str]:
    """The reason the site declines to send its locally trained weights, if it does."""
    if limits.values.allow_submit_model:
        return []
    return [
        f"{SITE_POLICY_DECLINED}: this site does not send its locally trained model "
        f"(allow_submit_model false, {limits.sources['allow_submit_model']})"
    ]


def check_statistics(n_train: int, limits: EffectiveLimits) -> list[str]:
    """The reason the site declines to send aggregate statistics of its training rows, if it does.

    Feature moments (counts, sums, sums of squares) of fewer patients than the site's
    ``min_examples_per_round`` are a small cell: the site does not release them.
    """
    floor = limits.values.min_examples_per_round
    if n_train >= floor:
        return []
    return [
        f"{SITE_POLICY_DECLINED}: statistics of {n_train} training rows are a small cell, below this "
        f"site's min_examples_per_round {floor} ({limits.sources['min_examples_per_round']})"
    ]


def planned_steps(n_train: int, *, batch_size: int, local_steps: int = 0, local_epochs: int = 1) -> int:
    """Optimizer steps a round: ``local_steps``, or ``local_epochs`` passes of ``ceil(n / batch)`` batches."""
    if local_steps > 0:
        return int(local_steps)
    return int(local_epochs) * math.ceil(int(n_train) / int(batch_size))
