"""Tasks registered by name: a job says ``"task": "heart"`` and its ``task_args``.

Only classes registered here can be built from a job, so a job cannot name arbitrary code (a job config
is code-equivalent; see :mod:`fedhealth.policy.component_check`). A task comes from one of three places:

* the kit's own tasks (:data:`BUILTIN`), imported only when a job names them;
* a class decorated with :func:`register_task` in a module already imported;
* a task the site installed: a Python package that declares an entry point in the ``fedhealth.tasks``
  group (``name = "module:Class"``). It is loaded only when a job names a task that is neither built in
  nor registered, and only under the name the site declared, so a job can never import anything the
  site did not install.

``docs/extending.md`` walks through adding one.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points

from fedhealth.tasks.base import Task

# Name -> module that registers it on import (imported only when a job names the task).
BUILTIN: dict[str, str] = {
    "heart": "fedhealth.tasks.heart",
    "dicom": "fedhealth.tasks.imaging",
    "tabular": "fedhealth.tasks.tabular",
}
# The entry-point group of site-installed tasks (a package's ``[project.entry-points."fedhealth.tasks"]``).
ENTRY_POINT_GROUP = "fedhealth.tasks"
_REGISTRY: dict[str, type] = {}


def register_task(name: str):
    """Class decorator: register a task class (a dataclass whose fields are its job arguments)."""

    def decorate(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(
                f"task {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})."
            )
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return decorate


def installed_names(group: str) -> list[str]:
    """Names declared in an entry-point ``group`` by the packages installed here (nothing is imported)."""
    return sorted({ep.name for ep in entry_points(group=group)})


def load_installed(group: str, name: str) -> type | None:
    """The class a site-installed package declares as ``name`` in ``group`` (``None``: none declared).

    Only that one entry point is loaded. Its target must be a class (``"module:Class"``).

    Raises:
        ValueError: the entry point cannot be loaded (naming it and the error's type) or is not a class.
    """
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        return None
    if len({ep.value for ep in found}) > 1:
        raise ValueError(
            f"{name!r} is declared by several installed packages in {group!r}: "
            f"{', '.join(sorted(ep.value for ep in found))}; uninstall all but one."
        )
    entry = found[0]
    try:
        loaded = entry.load()
    except Exception as exc:  # noqa: BLE001 - a site's package: say which entry point, and what kind of error
        raise ValueError(
            f"the installed {group!r} entry point {name} = {entry.value!r} cannot be loaded: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(loaded, type):
        raise ValueError(f"the installed {group!r} entry point {name} = {entry.value!r} is not a class.")
    return loaded


def task_names() -> list[str]:
    """Every task a job may name: built in, registered, or installed at this site."""
    return sorted(set(BUILTIN) | set(_REGISTRY) | set(installed_names(ENTRY_POINT_GROUP)))


def task_class(name: str) -> type:
    """The registered class of task ``name``, importing a built-in or site-installed one on first use.

    Raises:
        ValueError: an unknown task (listing those a job may name), or a site-installed one that fails.
    """
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _REGISTRY:
        cls = load_installed(ENTRY_POINT_GROUP, name)
        if cls is not None and name not in _REGISTRY:  # the module may register it itself on import
            if not dataclasses.is_dataclass(cls):
                raise ValueError(
                    f"the installed task {name!r} ({cls.__module__}.{cls.__qualname__}) must be a "
                    "dataclass whose fields are its job arguments."
                )
            register_task(name)(cls)
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}.")
    return cls


def build_task(name: str, args: Mapping[str, object] | None = None) -> Task:
    """The task ``name`` with the job's ``task_args``; unknown names and arguments are errors.

    Raises:
        ValueError: an unknown task, or an argument the task does not take (listing those it does).
    """
    return build_options(task_class(name), args or {}, what=f"task {name!r}")


def build_options(cls: type, args: Mapping[str, object], *, what: str):
    """``cls(**args)`` for a dataclass, with unknown keys named (a typo is an error, not ignored)."""
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ValueError(
            f"{what} has no argument {', '.join(map(repr, unknown))}; it takes: {', '.join(known)}."
        )
    return cls(**args)
