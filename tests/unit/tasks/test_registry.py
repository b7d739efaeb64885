"""Tasks by name: built in, registered, or installed at the site through the ``fedhealth.tasks`` entry points.

The installed packages are real ``.dist-info`` folders on ``sys.path`` (:mod:`installed_plugins`), found by
``importlib.metadata`` as a ``pip install``-ed package is.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from installed_plugins import install_package

from fedhealth.tasks import registry

GROUP = registry.ENTRY_POINT_GROUP
SEPSIS = """
from dataclasses import dataclass


@dataclass(frozen=True)
class SepsisTask:
    window_hours: int = 6
    steps = ()
"""
BROKEN = "import a_module_this_site_never_installed\n"
PLAIN = "class NotADataclass:\n    steps = ()\n"
MODULES = {"site_sepsis_task": SEPSIS, "site_broken_task": BROKEN, "site_plain_task": PLAIN}
# (entry point name, the fragment of the error a job naming it gets)
BAD_ENTRIES = [
    ("broken", "entry point broken = 'site_broken_task:Task' cannot be loaded: ModuleNotFoundError"),
    ("plain", "installed task 'plain' (site_plain_task.NotADataclass) must be a dataclass"),
    (
        "missing_class",
        "entry point missing_class = 'site_sepsis_task:Nothing' cannot be loaded: AttributeError",
    ),
]


@pytest.fixture
def site_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A hospital's own package declaring tasks; the registry and ``sys.modules`` are restored after."""
    for name in registry.BUILTIN:  # registered on import: import them before taking the snapshot
        registry.task_class(name)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    root = install_package(
        tmp_path / "site-packages",
        monkeypatch,
        dist="hospital_tasks",
        entry_points={
            GROUP: {
                "sepsis": "site_sepsis_task:SepsisTask",
                "broken": "site_broken_task:Task",
                "plain": "site_plain_task:NotADataclass",
                "missing_class": "site_sepsis_task:Nothing",
                "heart": "site_sepsis_task:SepsisTask",  # cannot shadow the kit's own task
            }
        },
        modules=MODULES,
    )
    yield root
    for module in MODULES:
        sys.modules.pop(module, None)


def test_a_site_installed_task_is_built_by_the_name_it_declares(site_package: Path) -> None:
    assert "site_sepsis_task" not in sys.modules  # listing names imports nothing
    assert {"sepsis", "broken", "heart", "dicom"} <= set(registry.task_names())
    assert "site_sepsis_task" not in sys.modules
    task = registry.build_task("sepsis", {"window_hours": 12})
    assert type(task).__module__ == "site_sepsis_task" and task.window_hours == 12 and task.name == "sepsis"
    assert "site_broken_task" not in sys.modules  # only the entry point the job named was loaded


def test_an_installed_tasks_arguments_are_checked_like_the_kits(site_package: Path) -> None:
    with pytest.raises(ValueError) as info:
        registry.build_task("sepsis", {"window": 12})
    assert str(info.value) == "task 'sepsis' has no argument 'window'; it takes: window_hours."


def test_the_kits_own_task_wins_over_an_installed_one_of_the_same_name(site_package: Path) -> None:
    task = registry.build_task("heart")
    assert type(task).__module__ == "fedhealth.tasks.heart"


@pytest.mark.parametrize(("name", "fragment"), BAD_ENTRIES)
def test_an_installed_task_that_cannot_load_is_named_with_the_reason(
    site_package: Path, name: str, fragment: str
) -> None:
    with pytest.raises(ValueError) as info:
        registry.build_task(name)
    assert fragment in str(info.value)


def test_a_job_cannot_import_a_module_by_naming_it(site_package: Path) -> None:
    for name in ("site_sepsis_task:SepsisTask", "site_sepsis_task", "os"):
        with pytest.raises(ValueError) as info:
            registry.build_task(name)
        assert str(info.value).startswith(f"unknown task {name!r}; known tasks: broken, dicom, heart,")
    assert "site_sepsis_task" not in sys.modules


def test_without_installed_packages_the_known_tasks_are_the_kits() -> None:
    assert registry.task_names() == ["dicom", "heart", "tabular"]
    with pytest.raises(ValueError) as info:
        registry.build_task("sepsis")
    assert str(info.value) == "unknown task 'sepsis'; known tasks: dicom, heart, tabular."
