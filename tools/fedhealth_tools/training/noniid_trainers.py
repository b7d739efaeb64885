"""Trainers (see :mod:`fedhealth_tools.training.trainers`) for the non-IID algorithms, for benchmarks and
federated cross-validation: SCAFFOLD, FedOpt, Ditto and clustered FL through
:func:`fedhealth_tools.training.noniid_federation.run_noniid`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.training.noniid_federation import run_noniid
from fedhealth_tools.training.trainers import Model, Report, Trainer, _local_config, build_model

# Parameters of each algorithm read from a trainer's params (the rest are model and local settings).
ALGORITHM_OPTIONS = (
    "global_lr",
    "server_opt",
    "server_lr",
    "beta1",
    "beta2",
    "tau",
    "lam",
    "ditto_lr",
    "ditto_epochs",
    "split_round",
    "split_threshold",
    "max_clusters",
    "fixed_clusters",
)


def noniid_trainer(params: Mapping[str, object]) -> Trainer:
    """``algorithm`` for ``rounds`` rounds at ``lr * gamma ** round``; reports every round.

    Reports (and returns) one model per site: the global model for SCAFFOLD and FedOpt, the
    personal model for Ditto, the cluster's model for clustered FL. ``serve="global"`` returns the
    final global model instead (Ditto's global model, to compare with the personal ones).
    """

    def train(sites: Sequence[HeartSite], report: Report) -> Model:
        result = run_noniid(
            sites,
            lambda: build_model(params, sites[0].n_features),
            algorithm=str(params["algorithm"]),
            rounds=int(params["rounds"]),
            lr=float(params["lr"]),
            gamma=float(params.get("gamma", 1.0)),
            seed=int(params["seed"]),
            options={k: params[k] for k in ALGORITHM_OPTIONS if k in params},
            on_round=lambda r, models: report(r + 1, dict(models)),
            **_local_config(params),
        )
        return result.model if params.get("serve") == "global" else dict(result.site_models)

    return train
