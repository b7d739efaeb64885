"""The benchmark tables the docs show, by name: each a function of the ``results/`` folder.

``scripts/docs_tables.py`` writes them between markers in ``docs/``; a page names a table with
``<!-- BEGIN GENERATED: name -->``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from doc_tables import (
    attacks,
    compression,
    decode,
    ehr,
    encryption,
    heart,
    imaging,
    noniid,
    operating_point,
    privacy,
    reliability,
    scale,
    secagg,
    xgboost,
)

TABLES: dict[str, Callable[[Path], str]] = {
    "heart-bench": heart.heart_bench,
    "heart-per-site": heart.heart_per_site,
    "heart-jobs": heart.heart_jobs,
    "heart-jobs-setup": heart.heart_jobs_setup,
    "ehr-bench": ehr.ehr_bench,
    "ehr-per-site": ehr.ehr_per_site,
    "ehr-aims": ehr.ehr_aims,
    "ehr-setup": ehr.ehr_setup,
    "xgboost-bench": xgboost.xgboost_bench,
    "xgboost-aims": xgboost.xgboost_aims,
    "xgboost-rounds": xgboost.xgboost_rounds,
    "xgboost-setup": xgboost.xgboost_setup,
    "faults": reliability.faults,
    "robust-rules": reliability.robust_rules,
    "privacy-utility": privacy.privacy_utility,
    "attacks-cxr": attacks.attacks_cxr,
    "attacks-heart": attacks.attacks_heart,
    "attacks-membership": attacks.attacks_membership,
    "secagg-poc": secagg.secagg_poc,
    "secagg-inprocess": secagg.secagg_inprocess,
    "secagg-aims": secagg.secagg_aims,
    "privacy-utility-cxr": privacy.privacy_utility_cxr,
    "dp-cost": privacy.dp_cost,
    "strict-scope": privacy.strict_scope,
    "he-poc": encryption.he_poc,
    "he-poc-quiet": encryption.he_poc_quiet,
    "he-sweep": encryption.he_sweep,
    "compression": compression.compression,
    "compression-periodic": compression.compression_periodic,
    "compression-short": compression.compression_short,
    "compression-heart": compression.compression_heart,
    "compression-schedule": compression.compression_schedule,
    "noniid-heart": noniid.noniid_heart,
    "noniid-cxr-sites": noniid.noniid_cxr_sites,
    "noniid-cxr-0.1": noniid.noniid_cxr_01,
    "noniid-cxr-1.0": noniid.noniid_cxr_10,
    "cxr": imaging.cxr,
    "cxr-densenet": imaging.cxr_densenet,
    "cxr-sites": imaging.cxr_sites,
    "cxr-fedavg40": imaging.cxr_fedavg40,
    "cxr-decode": imaging.cxr_decode,
    "decode-throughput": decode.decode_throughput,
    "decode-setup": decode.decode_setup,
    "cxr-operating-point": operating_point.cxr_operating_point,
    "scale-poc": scale.scale_poc,
    "scale-sites": scale.scale_sites,
    "scale-models": scale.scale_models,
    "scale-stock": scale.scale_stock,
    "scale-quiet": scale.scale_quiet,
    "scale-hardware": scale.scale_hardware,
}
