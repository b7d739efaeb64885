"""Shared fixtures: the four hospitals' preprocessed splits, loaded once per session."""

from __future__ import annotations

import pytest
import torch

from fedhealth.data.heart_source import TARGET, SiteSplit, load_heart_sites
from fedhealth.data.site_data import SiteTable

# The models are tiny: one thread is many times faster than several competing for a busy CPU.
torch.set_num_threads(1)


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
