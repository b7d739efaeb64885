"""The ``indo_rct`` job family spec, built from the heart family's defaults (config only, no new Python).

:func:`indo_rct_spec` takes ``job_specs/heart.json``'s defaults and changes only what the table
needs: the tabular task with the indo_rct dictionary (included from
``job_specs/dictionaries/indo_rct.json`` with ``$file``, so the dictionary is one file), the EHR
tasks, half the sites as ``min_clients`` (the federation block's ``min_fraction`` 0.5: centres 3_UK
and 4_Case hold 15 and 2 training patients, below a site's default ``min_examples_per_round`` of 16,
and decline), federated feature alignment in place of the
heart's scaling statistics, and the persistor that sizes the model from the aligned
schema. ``scripts/make_indo_rct.py`` writes it to ``job_specs/indo_rct.json``.
"""

from __future__ import annotations

import copy
from typing import Any

from fedhealth_tools.jobs.federation import REFERENCE, SECTION
from fedhealth_tools.jobs.spec import INCLUDE

FAMILY = "indo_rct"
JOB = "indo_rct_fedavg"
DICTIONARY_INCLUDE = {INCLUDE: "dictionaries/indo_rct.json"}
MIN_FRACTION = 0.5  # of the heart family's 4 sites: min_clients 2
SAG_WAIT_S = 30
MIN_CLIENTS_REF = {REFERENCE: "min_clients"}
TASKS = ["ehr_profile", "set_schema", "train", "validate", "submit_model"]
ALIGNMENT = {
    "id": "alignment",
    "path": "fedhealth.workflows.ehr_alignment_controller.EhrAlignmentController",
    "args": {
        "dictionary": dict(DICTIONARY_INCLUDE),
        "min_clients": dict(MIN_CLIENTS_REF),
        "task_timeout": 120,
        "mode": "union",
        "min_sites_with_feature": 2,
        "max_missing_fraction": 0.9,
        "indicators": True,
        "imputation": "mean",
        "min_cell": 5,
        "wait_time_after_min_received": 120,  # every site gets the whole task_timeout to answer
    },
}
PERSISTOR = {
    "id": "persistor",
    "path": "fedhealth.persistors.tabular_model_persistor.TabularModelPersistor",
    "args": {"model_args": {"arch": "logreg", "hidden": 16, "seed": 0}},
}
# the heart family's first workflow, whichever it is now: scaling statistics or alignment
_PRE_TRAINING = ("fed_stats", "alignment")


def indo_rct_spec(heart: dict[str, Any]) -> dict[str, Any]:
    """The indo_rct family spec from the heart family spec (which is left unchanged).

    Raises:
        ValueError: the heart defaults lack the federation block, the site executor, the persistor,
            the pre-training workflow or ``scatter_and_gather`` (the message names which).
    """
    defaults = copy.deepcopy(heart["defaults"])
    if SECTION not in defaults:
        raise ValueError(f"heart defaults have no {SECTION!r} block to take the site count from")
    # A declining site's error reply counts as a response in FLARE: without a wait, a round would be
    # aggregated once the two small centres had refused, before the others sent their updates. The
    # wait ends as soon as every site has answered, so it costs nothing when all do.
    defaults[SECTION].update(min_fraction=MIN_FRACTION, wait_time_after_min_received=SAG_WAIT_S)
    defaults["meta"]["min_clients"] = dict(MIN_CLIENTS_REF)
    executors = defaults["client"]["executors"]
    if len(executors) != 1:
        raise ValueError(
            f"heart defaults have {len(executors)} executors; indo_rct expects the one site executor"
        )
    executors[0]["tasks"] = list(TASKS)
    args = executors[0]["executor"]["args"]
    args["task"] = "tabular"
    args["task_args"] = {"dataset": FAMILY, "dictionary": dict(DICTIONARY_INCLUDE)}
    server = defaults["server"]
    _replace(server["components"], "persistor", PERSISTOR)
    pre = next((w["id"] for w in server["workflows"] if w["id"] in _PRE_TRAINING), None)
    if pre is None:
        raise ValueError(f"heart defaults have no workflow {' or '.join(_PRE_TRAINING)} to replace")
    _replace(server["workflows"], pre, ALIGNMENT)
    sag = _item(server["workflows"], "scatter_and_gather")
    sag["args"]["min_clients"] = dict(MIN_CLIENTS_REF)
    sag["args"]["ignore_result_error"] = None
    return {"family": FAMILY, "defaults": defaults, "jobs": {JOB: {}}}


def _item(items: list[dict[str, Any]], item_id: str) -> dict[str, Any]:
    for item in items:
        if item.get("id") == item_id:
            return item
    raise ValueError(f"heart defaults have no component or workflow {item_id!r}")


def _replace(items: list[dict[str, Any]], item_id: str, new: dict[str, Any]) -> None:
    items[items.index(_item(items, item_id))] = copy.deepcopy(new)
