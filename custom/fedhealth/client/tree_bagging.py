"""Tree-based bagging as a client algorithm: each round the site grows new trees from the global ensemble.

The ensemble mode for sites that cannot run lock-step histogram rounds (:mod:`fedhealth.trees.bagging`,
FLARE's tree-based bagging semantics): the server sends the global XGBoost model
(:class:`fedhealth.persistors.tree_model_persistor.TreeModelPersistor`), the site boosts
``num_parallel_tree`` trees per local round on its own rows, with learning rate ``eta / num_sites``, from
that model's margin, and sends only its new trees; the server appends every site's trees
(:class:`fedhealth.aggregators.tree_bagging_aggregator.TreeBaggingAggregator`). A round needs no site to
wait for another, so ScatterAndGather's ``min_clients`` lets a late or dropped site miss rounds.

It replaces the task's local training (``trains``) and runs on a tabular task aligned for trees; the
XGBoost parameters are checked against what a site accepts (:mod:`fedhealth.trees.params`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fedhealth import constants as C
from fedhealth.client.base import (
    AlgorithmContext,
    ClientAlgorithm,
    RoundInput,
    RoundState,
    register_algorithm,
)
from fedhealth.training.loops import evaluate
from fedhealth.trees.bagging import append_trees, bagging_params, site_round
from fedhealth.trees.matrices import site_matrices
from fedhealth.trees.model import TreeModel, tree_weights
from fedhealth.trees.params import check_params


@register_algorithm
@dataclass
class TreeBagging(ClientAlgorithm):
    """Grow this site's trees for the global ensemble.

    Args:
        params: XGBoost parameters (``eta`` is the global learning rate; ``base_score`` must match the
            server's persistor): only those :func:`fedhealth.trees.params.check_params` accepts.
        num_sites: the sites that boost each round (the learning rate is divided among them).
        num_parallel_tree: trees per local boosting round.
        local_rounds: local boosting rounds per federated round.
    """

    params: dict = field(default_factory=dict)
    num_sites: int = 4
    num_parallel_tree: int = 1
    local_rounds: int = 1
    name = "tree_bagging"
    trains = True
    _context: AlgorithmContext | None = field(default=None, init=False, repr=False)
    _new_trees: bytes | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.local_rounds < 1:
            raise ValueError(f"tree_bagging needs local_rounds >= 1, not {self.local_rounds}.")
        checked = check_params(self.params)
        self._round_params = bagging_params(
            checked, num_sites=self.num_sites, num_parallel_tree=self.num_parallel_tree
        )
        self._eta = float(checked["eta"])

    def check(self, others: Sequence[ClientAlgorithm], local: Mapping[str, object]) -> None:
        if others:
            names = sorted(a.name for a in others)
            raise ValueError(f"tree_bagging grows trees and runs alone; it cannot run with {names}.")

    def check_site(self, site) -> None:
        if not site.binary or not hasattr(site, "schema"):
            raise ValueError(
                "tree_bagging trains a binary outcome of an aligned tabular task (task 'tabular')."
            )

    def start(self, context: AlgorithmContext) -> None:
        self._context = context

    def round_lr(self, rnd: RoundInput) -> float | None:
        return self._eta / self.num_sites  # each site's share of the global learning rate

    def train(self, state: RoundState) -> dict:
        model = state.model
        if not isinstance(model, TreeModel):
            raise ValueError(
                "tree_bagging needs a tree model from the server (TreeModelPersistor), not a network"
            )
        (x, y), _, names = site_matrices(self._context.site)
        new = site_round(
            model.model_json,
            x,
            y,
            params=self._round_params,
            feature_names=names,
            local_rounds=self.local_rounds,
        )
        model.replace(append_trees(model.model_json, [new]))  # the global model plus this site's trees
        self._new_trees = new
        loss = evaluate(model, x, y)[C.M_LOSS]  # the kit's loss on the site's training rows
        return {C.M_TRAIN_LOSS: loss, C.M_STEPS: self.local_rounds * self.num_parallel_tree}

    def after_round(self, state: RoundState) -> None:
        if self._new_trees is None:
            raise RuntimeError("tree_bagging: no trees were grown this round")
        state.update = tree_weights(self._new_trees)  # only the new trees leave the site
        self._new_trees = None
