"""Shared fixtures: the hospitals' preprocessed splits and a provisioned POC kit with HE, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedhealth.data.site_data import TARGET, SiteTable
from fedhealth_tools.data.heart_source import SiteSplit, load_heart_sites
from fedhealth_tools.poc.variants import project_on_port, project_with_he
from fedhealth_tools.poc.workspace import PocLayout, prepare_workspace

# The models are tiny: one thread is many times faster than several competing for a busy CPU.
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


def _table(frame) -> SiteTable:
    return SiteTable(features=frame.drop(columns=TARGET), labels=frame[TARGET].to_numpy("float32"))


@pytest.fixture(scope="session")
def heart_splits() -> dict[str, SiteSplit]:
    """FLamby's Fed-Heart-Disease splits, keyed by FLARE site name."""
    return load_heart_sites()


@pytest.fixture(scope="session")
def heart_tables(heart_splits: dict[str, SiteSplit]) -> dict[str, tuple[SiteTable, SiteTable]]:
    """Each hospital's ``(train, test)`` as the site-side :class:`SiteTable` objects."""
    return {name: (_table(s.train), _table(s.test)) for name, s in heart_splits.items()}


@pytest.fixture(scope="session")
def he_kits(tmp_path_factory: pytest.TempPathFactory) -> PocLayout:
    """``nvflare poc prepare`` of the kit's project with HE: server and four site kits."""
    base = tmp_path_factory.mktemp("he_kits")
    project = project_with_he(
        project_on_port(ROOT / "provision" / "poc.yml", base / "project.yml", 8102), base / "project.yml"
    )
    return prepare_workspace(project, base / "poc")
