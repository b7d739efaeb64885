"""Inversion of a logistic-regression update, as a compromised server would attempt it (issue 20).

A heart site trains ``p = σ(W x + b)`` (:class:`fedhealth.models.tabular.TabularNet`, ``arch="logreg"``).
One SGD step on one patient with learning rate ``lr`` moves the weights by ``ΔW = −lr (p − y) x`` and
``Δb = −lr (p − y)``, so whoever sees the weights a site received and those it sent reads the
patient's (encoded, scaled) record as ``x = ΔW / Δb`` (Phong et al. 2018, "Privacy-Preserving Deep
Learning via Additively Homomorphic Encryption"; issue 15, finding 4).

What weakens it, and what :func:`recovery` then measures, with the same signature for every case (the
caller builds the weights):

- a batch of ``B`` patients or several local steps: the ratio is the mixture
  ``Σ gᵢ xᵢ / Σ gᵢ`` (``gᵢ = pᵢ − yᵢ``), in general near no patient;
- DP noise on the update: both ``ΔW`` and ``Δb`` carry noise, and the ratio amplifies it when ``Δb`` is small;
- secure aggregation: the server sees only the sum of the sites' updates; attack ``sent = received + Σ Δₛ``;
- top-k sparsification: coordinates not sent are 0, so the recovered value there is 0.

The one-logit logistic model is attacked through its only layer; the MLP (``arch="mlp"``, as in
``heart_topk``) through its first layer, which leaks the input the same way (Phong et al. 2018): for
hidden unit ``j``, ``ΔW₁[j] = −lr δⱼ x`` and ``Δb₁[j] = −lr δⱼ``, so the unit whose bias moved most gives
``x``. A multi-class logistic head (``net.weight`` of shape ``(k, d)``) is refused with a message.

The rows to compare with come from :func:`site_rows` (task ``heart``: the site's encoded features under
the job's global scaling) or :func:`tabular_site_rows` (task ``tabular``), as the executor trains on
them. Nothing here prints or returns a row or the recovered vector's values in a report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedhealth.data.site_data import SiteTable
from fedhealth.tasks.base import SiteContext
from fedhealth.tasks.tabular import TabularTask
from fedhealth.training.heart_site import HeartSite

WEIGHT, BIAS = "net.weight", "net.bias"
MLP_WEIGHT, MLP_BIAS = "net.0.weight", "net.0.bias"  # TabularNet(arch="mlp")'s first layer
# A recovered vector within this distance of a row (scaled units) IS that row: float32 weights
# carry about 7 digits, and the scaled features are of order 1.
MATCH_TOLERANCE = 1e-3
# A feature counts as recovered when within this absolute distance of the row's value, in the scaled
# units the site trains on (standardised features: 0.05 is a twentieth of a standard deviation).
RECOVERY_TOLERANCE = 0.05


@dataclass(frozen=True)
class Match:
    """The training row nearest to a recovered vector."""

    row: int  # index into the rows given to nearest_row
    distance: float  # Euclidean, in scaled feature units
    second: float  # distance to the next-nearest row, for scale

    @property
    def exact(self) -> bool:
        return self.distance <= MATCH_TOLERANCE


def _first_layer(
    received: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, float]:
    """``(ΔW₁[j], Δb₁[j])`` of the MLP's first layer for the hidden unit ``j`` whose bias moved most."""
    dw = np.asarray(sent[MLP_WEIGHT], np.float64) - np.asarray(received[MLP_WEIGHT], np.float64)
    db = np.asarray(sent[MLP_BIAS], np.float64).ravel() - np.asarray(received[MLP_BIAS], np.float64).ravel()
    if dw.ndim != 2 or dw.shape[0] != db.size:
        raise ValueError(
            f"the MLP's first layer must be ({MLP_WEIGHT} (h, d), {MLP_BIAS} (h,)), got {dw.shape}."
        )
    if not (np.all(np.isfinite(dw)) and np.all(np.isfinite(db))):
        raise ValueError("the update holds NaN or infinite values: nothing to invert.")
    j = int(np.argmax(np.abs(db)))
    return dw[j], float(db[j])


def _deltas(received: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """``(ΔW, Δb)`` of the one-logit logistic model (or the MLP's first layer), checked."""
    if {MLP_WEIGHT, MLP_BIAS} <= set(received) and {MLP_WEIGHT, MLP_BIAS} <= set(sent):
        return _first_layer(received, sent)
    if set(received) != {WEIGHT, BIAS} or set(sent) != {WEIGHT, BIAS}:
        raise ValueError(
            f"the inversion needs the logistic model ({WEIGHT}, {BIAS}) or the MLP's first layer "
            f"({MLP_WEIGHT}, {MLP_BIAS}), got {sorted(sent)}."
        )
    shapes = (np.shape(received[WEIGHT]), np.shape(sent[WEIGHT]))
    if shapes[0] != shapes[1] or len(shapes[0]) != 2 or shapes[0][0] != 1:
        raise ValueError(
            f"the inversion needs one logit ({WEIGHT} of shape (1, d)), got received {shapes[0]} and "
            f"sent {shapes[1]}: a multi-class head mixes every class's gradient and is not audited."
        )
    if np.size(received[BIAS]) != 1 or np.size(sent[BIAS]) != 1:
        raise ValueError(f"the inversion needs one bias ({BIAS} of shape (1,)), got {np.shape(sent[BIAS])}.")
    dw = np.asarray(sent[WEIGHT], np.float64).ravel() - np.asarray(received[WEIGHT], np.float64).ravel()
    db = float(
        np.asarray(sent[BIAS], np.float64).ravel()[0] - np.asarray(received[BIAS], np.float64).ravel()[0]
    )
    if not (np.all(np.isfinite(dw)) and np.isfinite(db)):
        raise ValueError("the update holds NaN or infinite values: nothing to invert.")
    return dw, db


def invert(received: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray]) -> np.ndarray:
    """``ΔW / Δb`` between the weights a site received and those it sent (the logistic model).

    Raises:
        ValueError: the bias did not move (nothing to divide by) or the model is not the one-logit
            logistic regression.
    """
    dw, db = _deltas(received, sent)
    if db == 0.0:
        raise ValueError("the bias did not change: the update cannot be inverted this way")
    return dw / db


def nearest_row(vector: np.ndarray, rows: np.ndarray) -> Match:
    """The row of ``rows`` (``(n, d)``) nearest to ``vector``, and the two smallest distances."""
    distances = np.linalg.norm(np.asarray(rows, np.float64) - np.asarray(vector, np.float64), axis=1)
    order = np.argsort(distances)
    second = float(distances[order[1]]) if len(order) > 1 else float("inf")
    return Match(row=int(order[0]), distance=float(distances[order[0]]), second=second)


def recovery(
    received: Mapping[str, np.ndarray],
    sent: Mapping[str, np.ndarray],
    rows: np.ndarray,
    *,
    tolerance: float = RECOVERY_TOLERANCE,
) -> dict:
    """How much of a training row the inversion ``ΔW / Δb`` of this update recovers.

    Args:
        received: the weights the site (or sites) started from (``net.weight``, ``net.bias``).
        sent: the weights the server sees: one site's, ``received + Σ Δₛ`` under secure aggregation,
            with DP noise, or with the coordinates top-k did not send left unchanged.
        rows: the training rows the update could come from, ``(n, d)``, in the scaled units the
            site trains on (:func:`site_rows`).
        tolerance: a feature is recovered when within this absolute distance of the row's value
            (scaled units; default :data:`RECOVERY_TOLERANCE` = 0.05).

    Returns:
        ``invertible`` (False when the bias did not move: then no row is recovered), ``row`` (index of
        the nearest row, or None), ``distance`` and ``second`` (Euclidean, to the nearest and
        next-nearest row), ``fraction`` (share of the nearest row's features recovered within
        ``tolerance``), ``best_fraction`` (the largest such share over all rows), ``exact`` (the whole
        row, within :data:`MATCH_TOLERANCE`), ``observed`` (share of weight coordinates that moved),
        ``tolerance``. Aggregate numbers only: no feature value.

    Raises:
        ValueError: not the one-logit logistic model, non-finite weights, rows of the wrong width, or
            a tolerance that is not positive.
    """
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive (scaled feature units), got {tolerance}.")
    dw, db = _deltas(received, sent)
    rows = np.asarray(rows, np.float64)
    if rows.ndim != 2 or rows.shape[1] != dw.size or rows.shape[0] == 0:
        raise ValueError(f"rows must be (n >= 1, {dw.size}) to match {WEIGHT}, got {rows.shape}.")
    observed = float(np.count_nonzero(dw)) / dw.size
    if db == 0.0:
        return {
            "invertible": False,
            "row": None,
            "distance": float("inf"),
            "second": float("inf"),
            "fraction": 0.0,
            "best_fraction": 0.0,
            "exact": False,
            "observed": observed,
            "tolerance": tolerance,
        }
    vector = dw / db
    match = nearest_row(vector, rows)
    within = np.abs(rows - vector) <= tolerance
    return {
        "invertible": True,
        "row": match.row,
        "distance": match.distance,
        "second": match.second,
        "fraction": float(within[match.row].mean()),
        "best_fraction": float(within.mean(axis=1).max()),
        "exact": match.exact,
        "observed": observed,
        "tolerance": tolerance,
    }


def site_rows(
    train: SiteTable,
    test: SiteTable,
    scaling: Mapping[str, list[float]],
    *,
    chol_zero_as_missing: bool = True,
) -> np.ndarray:
    """A heart site's training rows as its executor trains on them: encoded, under the global scaling.

    Args:
        train: the site's training split.
        test: its test split (unused here, the site needs it).
        scaling: what the server's federated statistics sent (``fedhealth_scaling.json`` in the
            site's run folder).
        chol_zero_as_missing: as the job's setting.
    """
    site = HeartSite("site", train, test, chol_zero_as_missing=chol_zero_as_missing, scaling="global")
    site.set_scaling(dict(scaling))
    return site.arrays("train")[0]


def tabular_site_rows(
    site_root: Path, task_args: Mapping[str, object], schema: Mapping[str, object]
) -> np.ndarray:
    """A ``tabular`` site's training rows as its executor trains on them.

    Args:
        site_root: the site's folder (its kit: ``local/`` settings name the data root).
        task_args: the job's ``task_args`` (``dictionary``, ``dataset``).
        schema: the aligned schema the server sent (``ehr_schema.json`` of the job result).
    """
    task = TabularTask(dictionary=task_args["dictionary"], dataset=str(task_args["dataset"]))
    site = task.load_site(SiteContext(name=Path(site_root).name, site_root=Path(site_root), settings={}))
    site.set_schema(schema, save=False)
    return site.arrays("train")[0]
