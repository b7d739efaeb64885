"""The one-patient inversion of issue 15, finding 4, as a FLARE-free helper the tests share.

A heart site trains the logistic-regression model ``p = σ(W x + b)``. One SGD step on one patient
with learning rate ``lr`` moves the weights by ``ΔW = −lr (p − y) x`` and ``Δb = −lr (p − y)``, so
whoever sees the received and the sent weights reads the patient's (encoded, scaled) record as
``x = ΔW / Δb``. With several patients or steps the ratio is a mixture that need not be near any row.

:func:`invert` recovers the vector; :func:`nearest_row` says which of the site's training rows it is
closest to and how close, so a test can assert an exact match (the attack works) or no match (the
site's floors defeat it). The rows come from :func:`site_rows` (task ``heart``: the site's own encoded
features under the job's global scaling) or :func:`tabular_site_rows` (task ``tabular``: the site's
export read with its mapping, encoded under the server's aligned schema), as the executor trains on
them. Nothing here prints a row.
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
# A recovered vector within this distance of a row (scaled units) IS that row: float32 weights
# carry about 7 digits, and the scaled features are of order 1.
MATCH_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Match:
    """The training row nearest to a recovered vector."""

    row: int  # index into the rows given to nearest_row
    distance: float  # Euclidean, in scaled feature units
    second: float  # distance to the next-nearest row, for scale

    @property
    def exact(self) -> bool:
        return self.distance <= MATCH_TOLERANCE


def invert(received: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray]) -> np.ndarray:
    """``ΔW / Δb`` between the weights a site received and those it sent (the logistic model).

    Raises:
        ValueError: the bias did not move (nothing to divide by) or the model is not logistic regression.
    """
    if set(received) != {WEIGHT, BIAS} or set(sent) != {WEIGHT, BIAS}:
        raise ValueError(f"the inversion needs the logistic model ({WEIGHT}, {BIAS}), got {sorted(sent)}")
    dw = np.asarray(sent[WEIGHT], np.float64).ravel() - np.asarray(received[WEIGHT], np.float64).ravel()
    db = float(
        np.asarray(sent[BIAS], np.float64).ravel()[0] - np.asarray(received[BIAS], np.float64).ravel()[0]
    )
    if db == 0.0:
        raise ValueError("the bias did not change: the update cannot be inverted this way")
    return dw / db


def nearest_row(vector: np.ndarray, rows: np.ndarray) -> Match:
    """The row of ``rows`` (``(n, d)``) nearest to ``vector``, and the two smallest distances."""
    distances = np.linalg.norm(np.asarray(rows, np.float64) - np.asarray(vector, np.float64), axis=1)
    order = np.argsort(distances)
    second = float(distances[order[1]]) if len(order) > 1 else float("inf")
    return Match(row=int(order[0]), distance=float(distances[order[0]]), second=second)


def site_rows(
    train: SiteTable,
    test: SiteTable,
    scaling: Mapping[str, list[float]],
    *,
    chol_zero_as_missing: bool = True,
) -> np.ndarray:
    """A heart site's training rows as its executor trains on them: encoded, under the global scaling.

    ``scaling`` is what the server's federated statistics sent (``fedhealth_scaling.json`` in the
    site's run folder).
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
