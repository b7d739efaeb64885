"""Client algorithms a site installs (``fedhealth.client_algorithms`` entry points) build as the kit's do."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from installed_plugins import install_package

from fedhealth.client import base

GROUP = base.ENTRY_POINT_GROUP
SOURCE = """
from dataclasses import dataclass, replace

from fedhealth.client.base import ClientAlgorithm


@dataclass
class LrHalving(ClientAlgorithm):
    factor: float = 0.5

    def configure(self, config, state):
        return replace(config, lr=config.lr * self.factor)


@dataclass
class Misnamed(ClientAlgorithm):
    name = "something_else"


class NotAPlugin:
    pass


class NotADataclass(ClientAlgorithm):
    pass
"""
# (entry point name, fragment of the error)
BAD_ENTRIES = [
    ("misnamed", "calls itself 'something_else'; the entry point's name and the class's name must agree"),
    ("not_a_plugin", "(site_algorithms.NotAPlugin) must subclass fedhealth.client.base.ClientAlgorithm"),
    (
        "not_a_dataclass",
        "(site_algorithms.NotADataclass) must be a dataclass whose fields are its job options",
    ),
]


@pytest.fixture
def site_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in base.BUILTIN:  # registered on import: import them before taking the snapshot
        importlib.import_module(base.BUILTIN[name])
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    root = install_package(
        tmp_path / "site-packages",
        monkeypatch,
        dist="hospital_algorithms",
        entry_points={
            GROUP: {
                "lr_halving": "site_algorithms:LrHalving",
                "misnamed": "site_algorithms:Misnamed",
                "not_a_plugin": "site_algorithms:NotAPlugin",
                "not_a_dataclass": "site_algorithms:NotADataclass",
            }
        },
        modules={"site_algorithms": SOURCE},
    )
    yield root
    sys.modules.pop("site_algorithms", None)


def test_an_installed_algorithm_is_built_and_composed_by_name(site_package: Path) -> None:
    assert "lr_halving" in base.algorithm_names() and "site_algorithms" not in sys.modules
    local = {"batch_size": 16}
    (built,) = base.build_algorithms([{"name": "lr_halving", "args": {"factor": 0.25}}], local)
    assert built.name == "lr_halving" and built.factor == 0.25
    names = [a.name for a in base.build_algorithms(["lr_halving", "step_cap"], local)]
    assert names == ["lr_halving", "step_cap"]
    with pytest.raises(ValueError) as info:
        base.build_algorithms([{"name": "lr_halving", "args": {"facto": 1}}], local)
    assert str(info.value) == "client algorithm 'lr_halving' has no argument 'facto'; it takes: factor."


@pytest.mark.parametrize(("name", "fragment"), BAD_ENTRIES)
def test_an_installed_algorithm_that_breaks_the_contract_is_refused(
    site_package: Path, name: str, fragment: str
) -> None:
    with pytest.raises(ValueError) as info:
        base.build_algorithm(name)
    assert fragment in str(info.value)


def test_an_uninstalled_name_is_unknown() -> None:
    with pytest.raises(ValueError) as info:
        base.build_algorithm("site_algorithms:LrHalving")
    assert str(info.value).startswith("unknown client algorithm 'site_algorithms:LrHalving'; known: ditto,")
