"""What a site builds from a job's config: class paths and arguments checked before anything is built.

FLARE 2.9 builds a job component by importing what its ``path`` names and calling it with the job's
``args``; it does not check that the path names a class. The site's class allow-list
(``local/resources.json.default``) is the first line; these checks are the second, run by
:class:`fedhealth.widgets.component_guard.ComponentGuard` for every component FLARE is about to
build. They resolve a path without calling anything and return the reasons to refuse it (an empty
list: accept):

- a private name (any dotted part starting with ``_``);
- anything that is not a class: a function, a module, a method (``Class.method``), a constant;
- a class that is neither a FLARE ``FLComponent`` nor a ``torch.nn.Module`` (models are built
  from component configs too);
- a path that is not the class's own ``__module__.__qualname__`` (re-exports and aliases such as
  ``fedhealth.executors.site_executor.Path``);
- a string anywhere in the args that is an absolute path, starts with ``~`` or has a ``..`` part;
- an argument value of a stock class known to be unsafe (:data:`ARG_RULES`).

A dict inside the args that names a ``path`` or ``class_path`` is checked as a component too. With
``"config_type": "dict"`` it is refused outright: FLARE neither builds nor authorizes such a dict
(nor asks the site's components about it), but ``PTFileModelPersistor`` instantiates a dict
``model`` itself when the run starts.

Messages name argument locations (``args.model.args.data_root``), never argument values (a job may
put anything in a path, identifiers included). Importing the module a path names runs that module's
top-level code, as FLARE's own build would: the guard imports only paths the site's allow-list has
already passed (``check_component(..., resolve_nested=False)``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PATH_KEYS = ("path", "class_path")  # FLARE's precedence: path, then class_path (then name)
COMPONENT = "component"  # FLARE's default config_type; "dict" passes a config through unbuilt
# Component base classes, resolved only when a check needs them (no FLARE import at module load).
BASES = ("nvflare.apis.fl_component.FLComponent", "torch.nn.Module")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
ANY = object()  # in ArgRule.only: any value except those listed is refused
PERSISTOR = "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor"


@dataclass(frozen=True)
class ArgRule:
    """An argument value of a stock class that a site does not accept from a job.

    Args:
        component: the class path the rule applies to.
        arg: the argument name.
        refused: values refused (compared with ``==`` and type, so ``0`` is not ``False``).
        only: when given, the only values accepted (an absent argument is always accepted).
        reason: why, as the refusal message says it.
    """

    component: str
    arg: str
    reason: str
    refused: tuple = ()
    only: tuple | None = None

    def refuses(self, value: object) -> bool:
        if any(type(value) is type(bad) and value == bad for bad in self.refused):
            return True
        return self.only is not None and not any(type(value) is type(ok) and value == ok for ok in self.only)


ARG_RULES = (
    ArgRule(
        PERSISTOR,
        "load_weights_only",
        refused=(False,),
        reason="load_weights_only false makes torch unpickle arbitrary objects from the checkpoint",
    ),
    ArgRule(
        PERSISTOR,
        "source_ckpt_file_full_name",
        only=(None,),
        reason="a job may not name a checkpoint file on the site's disk to load",
    ),
    *(
        ArgRule(
            f"nvflare.app_opt.he.{path}",
            "tenseal_context_file",
            only=(context,),
            reason=f"the TenSEAL context must be the kit's own {context}",
        )
        for path, context in (
            ("model_encryptor.HEModelEncryptor", "client_context.tenseal"),
            ("model_decryptor.HEModelDecryptor", "client_context.tenseal"),
            ("model_serialize_filter.HEModelSerializeFilter", "server_context.tenseal"),
        )
    ),
)


def component_path(config: Mapping) -> str | None:
    """The class path a component config names (``path``, else ``class_path``), or None."""
    for key in PATH_KEYS:
        if key in config:
            value = config[key]
            return value if isinstance(value, str) else repr(value)
    return None


def _resolve(path: str) -> tuple[object | None, str | None]:
    """Import the longest module prefix of ``path`` and look up the rest; (object, None) or (None, why)."""
    parts = path.split(".")
    obj, n = None, 0
    for n in range(1, len(parts) + 1):
        name = ".".join(parts[:n])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name and n > 1:
                n -= 1  # parts[:n] is the module; the rest are attributes
                break
            return None, f"module {name!r} cannot be imported"
        except Exception as exc:  # a module that fails at import: say which, not its message
            return None, f"module {name!r} fails to import ({type(exc).__name__})"
    else:
        return obj, None
    for part in parts[n:]:
        if not hasattr(obj, part):
            return None, f"{'.'.join(parts[:n])!r} has no attribute {part!r}"
        obj = getattr(obj, part)
        n += 1
    return obj, None


def _bases() -> tuple[type, ...]:
    found = []
    for dotted in BASES:
        module, name = dotted.rsplit(".", 1)
        found.append(getattr(importlib.import_module(module), name))
    return tuple(found)


def _kind(obj: object) -> str:
    if inspect.ismodule(obj):
        return "a module"
    if inspect.isroutine(obj):
        return (
            "a method" if inspect.ismethod(obj) or "." in getattr(obj, "__qualname__", "") else "a function"
        )
    return f"a {type(obj).__name__} value"


def _form(path: object) -> list[str]:
    """Reasons found without importing anything: not a dotted path, or a private name in it."""
    if not isinstance(path, str) or not _DOTTED.fullmatch(path):
        return [f"{path!r} is not a dotted Python class path"]
    private = [part for part in path.split(".") if part.startswith("_")]
    return [f"{private[0]!r} is a private name"] if private else []


def check_path(path: object) -> list[str]:
    """Reasons to refuse building what ``path`` names (empty: it is a component class)."""
    reasons = _form(path)
    if reasons:
        return reasons
    obj, why = _resolve(path)
    if why:
        return [why]
    if not inspect.isclass(obj):
        return [f"it is {_kind(obj)}, not a class"]
    canonical = f"{obj.__module__}.{obj.__qualname__}"
    if canonical != path:
        reasons.append(f"it is an alias of {canonical!r} (name the class where it is defined)")
    if not issubclass(obj, _bases()):
        reasons.append("it is neither an FLComponent nor a torch.nn.Module")
    return reasons


def _unsafe_string(value: str) -> str | None:
    if value.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(value):
        return "is an absolute path"
    if value.startswith("~"):
        return "starts with '~' (a home folder)"
    if ".." in re.split(r"[\\/]", value):
        return "has a '..' path part"
    return None


def _walk_args(value: object, where: str, resolve_nested: bool) -> Iterator[str]:
    """Reasons for every unsafe string and nested component under ``value`` (located at ``where``)."""
    if isinstance(value, Mapping):
        if any(key in value for key in PATH_KEYS):
            kind = value.get("config_type", COMPONENT)
            if kind != COMPONENT:  # FLARE neither authorizes nor builds it; the receiver may build it
                yield f"{where} names a class in a {kind!r} config, which the site cannot check"
                return
            reasons = _check(value, resolve=resolve_nested, resolve_nested=resolve_nested)
            yield from (f"{where}: {reason}" for reason in reasons)
            return
        for key, item in value.items():
            yield from _walk_args(item, f"{where}.{key}", resolve_nested)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk_args(item, f"{where}[{i}]", resolve_nested)
    elif isinstance(value, str):
        why = _unsafe_string(value)
        if why:
            yield f"{where} {why}"


def _check(config: object, *, resolve: bool, resolve_nested: bool) -> list[str]:
    if not isinstance(config, Mapping):
        return [f"a component config must be a dict, got {type(config).__name__}"]
    path = component_path(config)
    if path is None:
        return ["it names no class ('path' or 'class_path')"]
    named = config.get("path", config.get("class_path"))
    reasons = [f"{path!r}: {reason}" for reason in (check_path(named) if resolve else _form(named))]
    args = config.get("args") or {}
    if not isinstance(args, Mapping):
        return [*reasons, f"{path!r}: args must be a dict"]
    for rule in ARG_RULES:
        if rule.component == path and rule.arg in args and rule.refuses(args[rule.arg]):
            reasons.append(f"{path!r}: args.{rule.arg}: {rule.reason}")
    reasons += [f"{path!r}: {reason}" for reason in _walk_args(dict(args), "args", resolve_nested)]
    return reasons


def check_component(config: object, *, resolve_nested: bool = True) -> list[str]:
    """Reasons to refuse one component config (``{"path": ..., "args": {...}}``); empty: accept.

    Args:
        config: the component config.
        resolve_nested: also import what components nested in the args name. The site's guard
            passes False: FLARE asks it about each nested component separately, after the site's
            allow-list has passed that path, and a path not yet allowed must not be imported (an
            import runs the module's code). Nested ``config_type`` ``dict`` configs are refused
            either way: FLARE never asks about them.
    """
    return _check(config, resolve=True, resolve_nested=resolve_nested)


def components_in(tree: object, where: str = "") -> Iterator[tuple[str, Mapping]]:
    """Every outermost component config in a job config tree, with its location (``components[2]``).

    A component's own args are not searched here: :func:`check_component` checks what they hold.
    """
    if isinstance(tree, Mapping):
        if any(key in tree for key in PATH_KEYS):
            yield where, tree
            return
        for key, item in tree.items():
            yield from components_in(item, f"{where}.{key}" if where else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, item in enumerate(tree):
            yield from components_in(item, f"{where}[{i}]")


def component_paths(tree: object) -> set[str]:
    """Every class path a config tree names, nested components (a persistor's ``model``) included."""
    found: set[str] = set()
    for _, config in components_in(tree):
        path = component_path(config)
        if path is not None:
            found.add(path)
        found |= component_paths(config.get("args"))
    return found


def job_configs(job_dir: Path) -> list[Path]:
    """The app config files of a job folder (``app*/config/*.json``)."""
    return sorted(Path(job_dir).glob("app*/config/*.json"))


def check_job(job_dir: Path) -> list[str]:
    """Every refusal a site would give a job's components: ``file location: reason``; empty: accepted."""
    job_dir = Path(job_dir)
    refusals = []
    for file in job_configs(job_dir):
        name = file.relative_to(job_dir).as_posix()
        for where, config in components_in(json.loads(file.read_text())):
            refusals += [f"{name} {where}: {reason}" for reason in check_component(config)]
    return refusals
