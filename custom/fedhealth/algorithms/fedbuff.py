"""Buffered asynchronous aggregation (FedBuff, Nguyen et al. 2022, "Federated Learning with Buffered
Asynchronous Aggregation", AISTATS), FLARE-free.

The server never waits for a round. Each site trains from the global model of some *version* ``t``
and sends its weights back whenever it is done; its *update* is ``delta = y - x_t``, the site's
weights minus the global weights of the version it started from (a site may also send ``delta``
itself). When the update arrives the server is at version ``T``; its *staleness* is
``s = T - t``. Updates go into a buffer; once ``buffer_size`` (K) are in it the server applies::

    x_{T+1} = x_T + server_lr * sum_i(n_i * w(s_i) * delta_i) / sum_i(n_i)

with ``n_i`` the site's sample weight (its training rows) and ``w(s) = (1 + s) ** -a`` the
polynomial staleness weight of FedBuff and FedAsync (Xie et al. 2019, "Asynchronous Federated
Optimization"; ``a = staleness_exponent``, 0 turns it off, FedBuff uses 0.5). The sum is divided by
the buffer's sample weight, not by the staleness-weighted one, as FedBuff divides by K: a buffer of
stale updates moves the model less, it is not renormalised back to a full step. With ``server_lr``
1, no staleness and K = every site it is FedAvg (McMahan et al. 2017).

An update older than ``max_staleness`` versions is dropped and counted; one with the wrong
parameters, a shape that differs or a NaN/Inf is refused with an error that names the site; with
``max_update_norm`` every update is clipped to that L2 norm first (Sun et al. 2019).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from fedhealth.training.robust import clip_by_norm, update_norm, validate_update

Weights = dict[str, np.ndarray]


class FedBuffUpdateError(ValueError):
    """A site's update cannot go into the buffer; the message names the site and says why."""


@dataclass(frozen=True)
class FedBuffConfig:
    """The server's settings.

    Args:
        buffer_size: K, the updates that make one new version.
        staleness_exponent: ``a`` of the staleness weight ``(1 + s) ** -a`` (0: no weighting).
        max_staleness: drop an update more than this many versions old (None: keep every one).
        server_lr: ``eta_g``, the server's step on the buffered average.
        max_update_norm: clip each update to this L2 norm before it is buffered (None: no clipping).
    """

    buffer_size: int
    staleness_exponent: float = 0.5
    max_staleness: int | None = None
    server_lr: float = 1.0
    max_update_norm: float | None = None

    def __post_init__(self) -> None:
        if not _whole(self.buffer_size, least=1):
            raise ValueError(f"buffer_size must be a whole number of at least 1, got {self.buffer_size!r}.")
        if not (math.isfinite(self.staleness_exponent) and self.staleness_exponent >= 0):
            raise ValueError(f"staleness_exponent must be 0 or more, got {self.staleness_exponent!r}.")
        if self.max_staleness is not None and not _whole(self.max_staleness, least=0):
            raise ValueError(
                f"max_staleness must be a whole number >= 0 or None, got {self.max_staleness!r}."
            )
        if not (math.isfinite(self.server_lr) and self.server_lr > 0):
            raise ValueError(f"server_lr must be positive, got {self.server_lr!r}.")
        if self.max_update_norm is not None and not (
            math.isfinite(self.max_update_norm) and self.max_update_norm > 0
        ):
            raise ValueError(f"max_update_norm must be positive or None, got {self.max_update_norm!r}.")


def staleness_weight(staleness: int, exponent: float) -> float:
    """FedBuff's polynomial staleness weight ``(1 + staleness) ** -exponent``.

    Raises:
        ValueError: on a negative staleness or exponent.
    """
    if staleness < 0 or exponent < 0:
        raise ValueError(f"staleness and exponent must be 0 or more, got {staleness} and {exponent}.")
    return float((1.0 + staleness) ** -exponent)


@dataclass(frozen=True)
class BufferedUpdate:
    """One update as the server counted it: who, from which version, how stale, with what weight."""

    site: str
    start_version: int
    staleness: int
    sample_weight: float
    staleness_weight: float
    clipped: bool = False

    def as_dict(self) -> dict:
        """A JSON-ready copy (for the run record)."""
        return {
            "site": self.site,
            "start_version": self.start_version,
            "staleness": self.staleness,
            "sample_weight": self.sample_weight,
            "staleness_weight": self.staleness_weight,
            "clipped": self.clipped,
        }


@dataclass(frozen=True)
class AppliedVersion:
    """A new global version and the buffer that made it."""

    version: int
    updates: tuple[BufferedUpdate, ...]

    def as_dict(self) -> dict:
        return {"version": self.version, "updates": [u.as_dict() for u in self.updates]}


@dataclass(frozen=True)
class Submission:
    """What became of one site's result.

    ``status`` is ``"buffered"`` (``applied`` is the version it completed, if it did) or
    ``"dropped"`` (older than ``max_staleness``; ``reason`` says so).
    """

    update: BufferedUpdate
    status: str
    reason: str | None = None
    applied: AppliedVersion | None = None


class FedBuff:
    """The server side of FedBuff over ``dict[str, ndarray]`` weights.

    Each site holds at most one task: :meth:`checkout` when it is sent the current model,
    :meth:`submit` when its result comes back, :meth:`abandon` when its task ended without one.
    Only the versions a site still trains from (and the current one) are kept in memory.

    Args:
        weights: the initial global model (version 0).
        config: the server's settings.
    """

    def __init__(self, weights: Mapping[str, np.ndarray], config: FedBuffConfig) -> None:
        if not weights:
            raise ValueError("FedBuff needs a model with at least one parameter.")
        self.config = config
        self.version = 0
        self.history: list[AppliedVersion] = []
        self._models: dict[int, Weights] = {0: {k: np.array(v, dtype="float64") for k, v in weights.items()}}
        self._outstanding: dict[str, int] = {}
        self._buffer: list[tuple[BufferedUpdate, Weights]] = []

    # ------------------------------------------------------------------ sites' tasks
    @property
    def model(self) -> Weights:
        """The current global weights (float64; do not modify)."""
        return self._models[self.version]

    @property
    def buffered(self) -> int:
        """Updates waiting in the buffer."""
        return len(self._buffer)

    def outstanding(self) -> dict[str, int]:
        """Site -> the version its current task started from."""
        return dict(self._outstanding)

    def checkout(self, site: str) -> int:
        """``site`` is sent the current model; the version it starts from.

        Raises:
            ValueError: the site still holds a task.
        """
        if site in self._outstanding:
            raise ValueError(
                f"Site {site!r} still holds a task from version {self._outstanding[site]}; "
                "submit or abandon it before sending another."
            )
        self._outstanding[site] = self.version
        return self.version

    def abandon(self, site: str) -> int | None:
        """``site``'s task ended without a result (timeout, failure); the version it had, if any."""
        start = self._outstanding.pop(site, None)
        self._prune()
        return start

    def submit(
        self,
        site: str,
        *,
        weights: Mapping[str, np.ndarray] | None = None,
        delta: Mapping[str, np.ndarray] | None = None,
        sample_weight: float,
    ) -> Submission:
        """Take ``site``'s result (its trained ``weights``, or its ``delta``) into the buffer.

        Returns:
            The :class:`Submission`; when it fills the buffer, ``applied`` is the new version.

        Raises:
            FedBuffUpdateError: the site holds no task, sent neither or both of ``weights`` and
                ``delta``, a sample weight that is not a positive number, or an update with other
                parameter names or shapes than the model or with NaN/Inf values. The site's task is
                over either way.
        """
        if site not in self._outstanding:
            raise FedBuffUpdateError(f"Site {site!r} sent an update but holds no task; it is refused.")
        start = self._outstanding.pop(site)
        try:
            return self._submit(site, start, weights, delta, sample_weight)
        finally:
            self._prune()

    def _submit(self, site, start, weights, delta, sample_weight) -> Submission:
        where = f"The update of site {site!r} (trained from version {start})"
        if (weights is None) == (delta is None):
            raise FedBuffUpdateError(f"{where} must carry either weights or a delta, not {_which(weights)}.")
        try:
            n = float(sample_weight)
        except (TypeError, ValueError):
            n = float("nan")
        if not (math.isfinite(n) and n > 0):
            raise FedBuffUpdateError(f"{where} has sample weight {sample_weight!r}, not a positive number.")
        staleness = self.version - start
        counted = BufferedUpdate(
            site=site,
            start_version=start,
            staleness=staleness,
            sample_weight=n,
            staleness_weight=staleness_weight(staleness, self.config.staleness_exponent),
        )
        limit = self.config.max_staleness
        if limit is not None and staleness > limit:
            reason = (
                f"{where} arrived at version {self.version}: staleness {staleness} is above "
                f"max_staleness {limit}; dropped."
            )
            return Submission(update=counted, status="dropped", reason=reason)
        reference = self.model
        problem = validate_update(weights if weights is not None else delta, reference=reference)
        if problem:
            raise FedBuffUpdateError(f"{where} is refused: {problem}")
        if weights is not None:
            base = self._models[start]
            change = {k: np.asarray(weights[k], dtype="float64") - base[k] for k in reference}
        else:
            change = {k: np.asarray(delta[k], dtype="float64") for k in reference}
        bound = self.config.max_update_norm
        if bound is not None and update_norm(change) > bound:
            change = clip_by_norm(change, max_norm=bound)
            counted = replace(counted, clipped=True)
        self._buffer.append((counted, change))
        applied = self._apply() if len(self._buffer) >= self.config.buffer_size else None
        return Submission(update=counted, status="buffered", applied=applied)

    # ------------------------------------------------------------------ server step
    def _apply(self) -> AppliedVersion:
        total = sum(u.sample_weight for u, _ in self._buffer)
        scale = self.config.server_lr / total
        new = {}
        for name, value in self.model.items():
            step = sum(u.sample_weight * u.staleness_weight * change[name] for u, change in self._buffer)
            new[name] = value + scale * step
        self.version += 1
        self._models[self.version] = new
        applied = AppliedVersion(version=self.version, updates=tuple(u for u, _ in self._buffer))
        self._buffer = []
        self.history.append(applied)
        return applied

    def _prune(self) -> None:
        """Forget the versions no task starts from (an update too stale to use needs none)."""
        limit = self.config.max_staleness
        keep = {self.version}
        keep |= {v for v in self._outstanding.values() if limit is None or self.version - v <= limit}
        for version in list(self._models):
            if version not in keep:
                del self._models[version]


def _which(weights: object) -> str:
    return "both" if weights is not None else "neither"


def _whole(value: object, *, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least
