"""A real provisioned POC kit with TenSEAL contexts (FLARE's HEBuilder, signed), once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhealth.poc.variants import project_on_port, project_with_he
from fedhealth.poc.workspace import PocLayout, prepare_workspace

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def he_kits(tmp_path_factory: pytest.TempPathFactory) -> PocLayout:
    """``nvflare poc prepare`` of the kit's project with HE: server and four site kits."""
    base = tmp_path_factory.mktemp("he_kits")
    project = project_with_he(
        project_on_port(ROOT / "project.yml", base / "project.yml", 8102), base / "project.yml"
    )
    return prepare_workspace(project, base / "poc")
