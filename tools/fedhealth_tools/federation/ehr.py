"""Tabular (EHR) sites in the in-process loop: the alignment step, pooled sites and row subsets.

The FLARE job runs ``ehr_profile`` then ``set_schema`` before training (the server aligns the
sites' small-cell-suppressed profiles, :func:`fedhealth.ehr.alignment.align`). :func:`align_sites`
does the same over in-memory :class:`~fedhealth.tasks.tabular.TabularSite` s, through each site's
own extra tasks, so what the server sees is what a real site would send. The loop then trains
with :class:`PrealignedTabularTask`, the tabular task whose server steps have already run: a pooled
site (:func:`pooled_site`) must take the federation's schema, not one aligned from itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from fedhealth import constants as C
from fedhealth.ehr.alignment import AlignmentPolicy, align
from fedhealth.ehr.harmonize import Harmonized
from fedhealth.ehr.report import DataReport
from fedhealth.tasks.tabular import TabularSite, TabularTask


@dataclass(frozen=True)
class PrealignedTabularTask(TabularTask):
    """The ``tabular`` task for sites that already hold their schema: no server steps are left."""

    steps = ()


def job_alignment_policy(spec: Mapping, *, label: str = "the job") -> AlignmentPolicy:
    """The alignment policy a job (or job spec) gives its ``EhrAlignmentController``.

    Raises:
        ValueError: the job names no alignment controller, or names two.
    """
    found: list[Mapping] = []

    def walk(node: object) -> None:
        if isinstance(node, Mapping):
            if str(node.get("path", "")).endswith(".EhrAlignmentController"):
                found.append(node.get("args") or {})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    if len(found) != 1:
        raise ValueError(f"{label} names {len(found)} EhrAlignmentController(s); expected exactly one")
    names = {f.name for f in fields(AlignmentPolicy)}
    return AlignmentPolicy(**{k: v for k, v in found[0].items() if k in names})


def align_sites(sites: Sequence[TabularSite], policy: AlignmentPolicy) -> dict:
    """Profile every site, align on the server side and send each site the schema; returns it.

    Raises:
        ValueError: no site, or what :func:`~fedhealth.ehr.alignment.align` rejects.
    """
    if not sites:
        raise ValueError("the alignment needs at least one site.")
    profiles = {
        site.name: site.extra_tasks()[C.TASK_EHR_PROFILE]({"min_cell": policy.min_cell}) for site in sites
    }
    schema = align(profiles, sites[0].dictionary, policy)
    for site in sites:
        site.extra_tasks()[C.TASK_SET_SCHEMA](schema)
    return schema


def take(table: Harmonized, positions: np.ndarray) -> Harmonized:
    """The rows ``positions`` of a harmonized table (its report is kept: it describes the file).

    Raises:
        IndexError: a position outside the table.
    """
    positions = np.asarray(positions, dtype=int)
    if positions.size and (positions.min() < 0 or positions.max() >= len(table)):
        raise IndexError(f"positions must lie in [0, {len(table)}); the table has {len(table)} rows.")
    features = table.features.iloc[positions].reset_index(drop=True)
    return Harmonized(features=features, labels=table.labels[positions], report=table.report)


def concat(tables: Sequence[Harmonized], *, label: str) -> Harmonized:
    """Several harmonized tables as one (the pooled baseline: every hospital's rows in one place).

    Raises:
        ValueError: no table.
    """
    if not tables:
        raise ValueError("nothing to pool: no table given.")
    features = pd.concat([t.features for t in tables], ignore_index=True)
    labels = np.concatenate([t.labels for t in tables]).astype("float32")
    return Harmonized(features=features, labels=labels, report=DataReport(label=label, rows=len(labels)))


def pooled_site(sites: Sequence[TabularSite], schema: dict, *, name: str = "pooled") -> TabularSite:
    """One site holding every site's training and test rows, encoded with the federation's ``schema``.

    Raises:
        ValueError: no site, or a schema made for another dictionary.
    """
    if not sites:
        raise ValueError("nothing to pool: no site given.")
    site = TabularSite(
        name,
        concat([s.train_table for s in sites], label=f"{name}/train"),
        concat([s.test_table for s in sites], label=f"{name}/test"),
        sites[0].dictionary,
    )
    site.set_schema(schema, save=False)
    return site
