"""Any hospital table, by configuration: the ``tabular`` task (data dictionary + the site's mapping).

The job carries the data dictionary (``task_args["dictionary"]``) and names the dataset folder; each
site keeps ``<data_root>/<dataset>/train.csv``, ``test.csv`` and its own ``mapping.json``
(:mod:`fedhealth.ehr.mapping`). Two steps come before training: ``ehr_profile`` (the site's
small-cell-suppressed counts and sums, :mod:`fedhealth.ehr.profile`) and ``set_schema`` (the features
the server aligned, with imputation and scaling, :mod:`fedhealth.ehr.alignment`). The schema is kept
in the run folder so a restarted site picks it up again.

The same sites serve tree jobs (:mod:`fedhealth.trees`): FLARE's XGBoost executor trains on
:meth:`TabularSite.arrays` (through :class:`fedhealth.executors.tabular_xgb_loader.TabularXGBDataLoader`)
and writes the booster into the run folder; the step ``submit_tree_model`` sends it to the server, and
``validate`` scores a tree model as it scores a network (:class:`fedhealth.trees.model.TreeModel`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from fedhealth import constants as C
from fedhealth.data.site_data import resolve_data_root
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.encoding import encode
from fedhealth.ehr.harmonize import Harmonized, harmonize, read_table
from fedhealth.ehr.mapping import SiteMapping
from fedhealth.ehr.profile import DEFAULT_MIN_CELL, site_profile
from fedhealth.models.state import tabular_from_weights
from fedhealth.models.tabular import TabularNet
from fedhealth.privacy.small_cells import site_min_cell
from fedhealth.tasks.arrays import train_on_arrays, validate_on_arrays
from fedhealth.tasks.base import ExtraTask, SiteContext
from fedhealth.tasks.registry import register_task
from fedhealth.training.loops import LocalTrainConfig, evaluate
from fedhealth.trees.model import MODEL_FILE, is_tree_weights, tree_from_weights, tree_weights

log = logging.getLogger(__name__)
_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TabularSite:
    """One hospital's harmonized table, encoded once the server's schema arrives."""

    round_split = "test"
    binary = True

    def __init__(
        self,
        name: str,
        train: Harmonized,
        test: Harmonized,
        dictionary: DataDictionary,
        *,
        min_cell: int = DEFAULT_MIN_CELL,
        run_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.train_table, self.test_table = train, test
        self.dictionary = dictionary
        self.min_cell = min_cell
        self.schema: dict | None = None
        self._x: dict[str, np.ndarray] = {}
        self._run_dir = run_dir
        path = run_dir / C.EHR_SCHEMA_FILE if run_dir is not None else None
        if path is not None and path.is_file():  # a restart within the same job
            self.set_schema(json.loads(path.read_text()), save=False)

    @property
    def n_train(self) -> int:
        return len(self.train_table)

    @property
    def n_features(self) -> int:
        return len(self._require_schema()["columns"])

    def _require_schema(self) -> dict:
        if self.schema is None:
            raise RuntimeError(
                f"site {self.name} has no aligned schema yet: the job must run the alignment workflow "
                f"({C.TASK_EHR_PROFILE}, {C.TASK_SET_SCHEMA}) before training, and this site must take part"
            )
        return self.schema

    def set_schema(self, schema: Mapping[str, object], *, save: bool = True) -> None:
        """Take the server's schema: check it is this job's dictionary, encode both splits, keep it."""
        if schema.get("dictionary") != self.dictionary.fingerprint():
            raise ValueError("the aligned schema was made for another data dictionary than this job's")
        schema = dict(schema)
        self._x = {
            "train": encode(self.train_table.features, schema),
            "test": encode(self.test_table.features, schema),
        }
        self.schema = schema
        if save and self._run_dir is not None:
            self._run_dir.mkdir(parents=True, exist_ok=True)
            (self._run_dir / C.EHR_SCHEMA_FILE).write_text(json.dumps(schema))

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        self._require_schema()
        table = self.train_table if split == "train" else self.test_table
        return self._x["train" if split == "train" else "test"], table.labels

    def train(
        self,
        model: nn.Module,
        config: LocalTrainConfig,
        *,
        generator: torch.Generator,
        seed: int,
        anchor: list[torch.Tensor] | None = None,
    ) -> dict[str, float]:
        return train_on_arrays(self, model, config, generator=generator, anchor=anchor)

    def evaluate(self, model: nn.Module, split: str) -> dict:
        x, y = self.arrays(split)
        return {**evaluate(model, x, y), **{k: float(v) for k, v in self.sizes().items()}}

    def validate(self, model: nn.Module, *, n_bootstrap: int) -> dict:
        metrics = validate_on_arrays(self, model, n_bootstrap=n_bootstrap)
        # the data dictionary's binary target: 1 is its positive value (the report names it)
        return {**metrics, C.M_POSITIVE_CLASS: f"{self.dictionary.target} = 1"}

    def sizes(self) -> dict[str, int]:
        return {C.M_N_TRAIN: len(self.train_table), C.M_N_TEST: len(self.test_table)}

    def extra_tasks(self) -> dict[str, ExtraTask]:
        return {
            C.TASK_EHR_PROFILE: self._profile,
            C.TASK_SET_SCHEMA: self._set_schema,
            C.TASK_SUBMIT_TREE: self._submit_tree,
        }

    def trained_tree(self) -> bytes:
        """The XGBoost model this site's tree training wrote into the run folder (JSON bytes)."""
        path = self._run_dir / MODEL_FILE if self._run_dir is not None else None
        if path is None or not path.is_file():
            raise RuntimeError(
                f"site {self.name} holds no trained tree model ({MODEL_FILE} in its run folder): "
                "the job's XGBoost workflow must run, and finish, before the model is collected"
            )
        return path.read_bytes()

    def _submit_tree(self, data: Mapping[str, object]) -> dict:
        return tree_weights(self.trained_tree())

    def _profile(self, data: Mapping[str, object]) -> dict:
        asked = int(data.get("min_cell", DEFAULT_MIN_CELL) or DEFAULT_MIN_CELL)  # type: ignore[arg-type]
        min_cell = max(asked, self.min_cell)  # the site may only raise the job's floor
        problems = self.train_table.report.counts()
        return site_profile(self.train_table.features, self.dictionary, min_cell=min_cell, problems=problems)

    def _set_schema(self, schema: Mapping[str, object]) -> None:
        self.set_schema(schema)
        return None


@register_task("tabular")
@dataclass(frozen=True)
class TabularTask:
    """A binary outcome from a hospital table described by a data dictionary.

    Args:
        dictionary: the data dictionary (:class:`~fedhealth.ehr.dictionary.DataDictionary` as JSON data).
        dataset: the folder under the site's data root that holds its files and ``mapping.json``.
    """

    dictionary: Mapping[str, object] = field(default_factory=dict)
    dataset: str = C.HEART_DATASET_DIR
    name = "tabular"
    steps = (C.TASK_EHR_PROFILE, C.TASK_SET_SCHEMA, C.TASK_SUBMIT_TREE)

    def __post_init__(self) -> None:
        if not _DATASET.match(self.dataset):
            raise ValueError(
                f"dataset must be a plain folder name (letters, digits, '_', '-', '.'), not {self.dataset!r}."
            )
        object.__setattr__(self, "_dictionary", DataDictionary.from_dict(self.dictionary))

    @property
    def data_dictionary(self) -> DataDictionary:
        return self._dictionary  # type: ignore[attr-defined]

    def load_site(self, context: SiteContext) -> TabularSite:
        folder = resolve_data_root(context.site_root) / self.dataset
        mapping = SiteMapping.load(folder, label=self.dataset)
        tables = {
            split: self.harmonize_file(folder / name, mapping, label=f"{self.dataset}/{split}.csv")
            for split, name in (("train", mapping.train), ("test", mapping.test))
        }
        for table in tables.values():
            for line in table.report.lines_out():
                log.info("site %s: %s", context.name, line)
        min_cell = site_min_cell(context.settings)  # names the file and key when it is not a whole number
        return TabularSite(
            context.name,
            tables["train"],
            tables["test"],
            self.data_dictionary,
            min_cell=min_cell,
            run_dir=context.run_dir,
        )

    def harmonize_file(self, path: Path, mapping: SiteMapping, *, label: str) -> Harmonized:
        """One file of the site mapped onto the dictionary (``label`` names the split, not the file)."""
        return harmonize(read_table(path, label=label), self.data_dictionary, mapping, label=label)

    def site_from_frames(
        self,
        name: str,
        train: pd.DataFrame,
        test: pd.DataFrame,
        mapping: SiteMapping,
        *,
        min_cell: int = DEFAULT_MIN_CELL,
    ) -> TabularSite:
        """A site from raw string frames already in memory (benchmarks and the in-process loop)."""
        tables = {
            split: harmonize(
                frame.astype(str), self.data_dictionary, mapping, label=f"{self.dataset}/{split}.csv"
            )
            for split, frame in (("train", train), ("test", test))
        }
        return TabularSite(name, tables["train"], tables["test"], self.data_dictionary, min_cell=min_cell)

    def build_model(self, site: TabularSite, **model_args: object) -> nn.Module:
        return TabularNet(in_features=site.n_features, **model_args)  # type: ignore[arg-type]

    def model_from_weights(self, weights: Mapping[str, object], site: TabularSite) -> nn.Module:
        """A network or, for ``xgboost_json`` weights, a tree model; checked against the site's schema."""
        model = tree_from_weights(weights) if is_tree_weights(weights) else tabular_from_weights(weights)
        if model.in_features != site.n_features:
            raise ValueError(
                f"site {site.name}: the model takes {model.in_features} features but the aligned schema "
                f"has {site.n_features}; the job's model and its alignment disagree"
            )
        return model
