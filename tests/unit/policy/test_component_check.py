"""What the site's component guard refuses: non-classes, private names, aliases, unsafe args."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flower_modules import FLOWER_JOBS

from fedhealth.policy.component_check import (
    ARG_RULES,
    check_component,
    check_job,
    check_path,
    component_paths,
    components_in,
)

JOBS_DIR = Path(__file__).resolve().parents[3] / "jobs"
JOBS = sorted(p.name for p in JOBS_DIR.iterdir() if (p / "meta.json").is_file())
PERSISTOR = "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor"
EXECUTOR = "fedhealth.executors.site_executor.SiteExecutor"
TABULAR = "fedhealth.models.tabular.TabularNet"
IMAGE_MODEL = "fedhealth.models.image_model.ImageModel"
# (class path, the words of the one reason it is refused for, or None: accepted)
PATH_CASES = [
    (EXECUTOR, None),
    (TABULAR, None),  # a torch.nn.Module: models are built from component configs too
    (PERSISTOR, None),
    ("fedhealth.data.site_data.write_site", "it is a function, not a class"),
    ("fedhealth_tools.provision.kits.run_provision", "it is a function, not a class"),
    ("fedhealth_tools.poc.workspace.update_site_settings", "it is a function, not a class"),
    ("subprocess.run", "it is a function, not a class"),
    ("os.system", "it is a function, not a class"),
    ("builtins.exec", "it is a function, not a class"),
    (f"{EXECUTOR}.execute", "it is a method, not a class"),
    ("fedhealth.data.site_data", "it is a module, not a class"),
    ("fedhealth.constants.HEART_SITES", "it is a tuple value, not a class"),
    ("fedhealth.executors._private.X", "'_private' is a private name"),
    (f"{EXECUTOR}.__init__", "'__init__' is a private name"),
    ("fedhealth.nothing_here.X", "'fedhealth' has no attribute 'nothing_here'"),
    ("no_such_package.X", "module 'no_such_package' cannot be imported"),
    ("fedhealth", "is not a dotted Python class path"),
    ("fedhealth.", "is not a dotted Python class path"),
    ("a/b.C", "is not a dotted Python class path"),
    ("torch.nn.modules.linear.Linear", None),
    ("torch.nn.Linear", "it is an alias of 'torch.nn.modules.linear.Linear'"),
]
ALIAS_AND_BASE = [  # refused for two reasons at once
    ("fedhealth.executors.site_executor.Path", ["alias of 'pathlib.Path'", "neither an FLComponent"]),
]
# (args of a SiteExecutor component, the words of the reason, or None: accepted)
ARG_CASES = [
    ({"batch_size": 16, "optimizer": "sgd", "events": ["fed.analytix_log_stats"]}, None),
    ({"out": "results/run.json"}, None),
    ({"out": "/etc/passwd"}, "args.out is an absolute path"),
    ({"out": "C:\\data"}, "args.out is an absolute path"),
    ({"out": "\\\\host\\share"}, "args.out is an absolute path"),
    ({"out": "~/.ssh/id_rsa"}, "args.out starts with '~' (a home folder)"),
    ({"out": "runs/../../startup"}, "args.out has a '..' path part"),
    ({"out": "..\\startup"}, "args.out has a '..' path part"),
    ({"deep": {"list": [1, {"file": "/tmp/x"}]}}, "args.deep.list[1].file is an absolute path"),
    ({"name": "..hidden"}, None),  # dots in a name are not a '..' part
]
# (persistor args, the words of the reason, or None: accepted)
PERSISTOR_CASES = [
    ({"model": {"path": TABULAR, "args": {"in_features": 14}}}, None),
    ({"load_weights_only": True}, None),
    ({"load_weights_only": False}, "unpickle arbitrary objects"),
    ({"source_ckpt_file_full_name": "model.pt"}, "may not name a checkpoint file"),
    ({"source_ckpt_file_full_name": None}, None),
    (
        {"model": {"path": "fedhealth.data.site_data.write_site", "args": {}}},
        "args.model: 'fedhealth.data.site_data.write_site': it is a function, not a class",
    ),
    (  # FLARE neither builds nor authorizes a config_type dict; the persistor instantiates it itself
        {"model": {"config_type": "dict", "path": TABULAR, "args": {}}},
        "args.model names a class in a 'dict' config, which the site cannot check",
    ),
    (
        {"model": {"path": TABULAR, "args": {"weights": "/data/w.pt"}}},
        f"args.model: '{TABULAR}': args.weights is an absolute path",
    ),
]
HE_CASES = [
    ("nvflare.app_opt.he.model_encryptor.HEModelEncryptor", "client_context.tenseal", None),
    ("nvflare.app_opt.he.model_encryptor.HEModelEncryptor", "client.key", "the kit's own client_context"),
    ("nvflare.app_opt.he.model_serialize_filter.HEModelSerializeFilter", "server_context.tenseal", None),
    ("nvflare.app_opt.he.model_decryptor.HEModelDecryptor", "server.key", "the kit's own client_context"),
]


@pytest.mark.parametrize(("path", "words"), PATH_CASES)
def test_check_path(path: str, words: str | None) -> None:
    reasons = check_path(path)
    if words is None:
        assert reasons == []
    else:
        assert len(reasons) == 1 and words in reasons[0], reasons


@pytest.mark.parametrize(("path", "words"), ALIAS_AND_BASE)
def test_an_alias_of_a_foreign_class_gets_both_reasons(path: str, words: list[str]) -> None:
    reasons = check_path(path)
    assert len(reasons) == len(words) and all(w in r for w, r in zip(words, reasons, strict=True)), reasons


@pytest.mark.parametrize(("args", "words"), ARG_CASES)
def test_string_args_that_reach_outside_the_run_folder(args: dict, words: str | None) -> None:
    reasons = check_component({"id": "executor", "path": EXECUTOR, "args": args})
    if words is None:
        assert reasons == []
    else:
        assert reasons == [f"'{EXECUTOR}': {words}"]


@pytest.mark.parametrize(("args", "words"), PERSISTOR_CASES)
def test_persistor_args_and_nested_model(args: dict, words: str | None) -> None:
    reasons = check_component({"id": "persistor", "path": PERSISTOR, "args": args})
    if words is None:
        assert reasons == []
    else:
        assert len(reasons) == 1 and reasons[0].startswith(f"'{PERSISTOR}': ") and words in reasons[0], (
            reasons
        )


@pytest.mark.parametrize(("path", "context", "words"), HE_CASES)
def test_he_filters_load_only_the_kits_context(path: str, context: str, words: str | None) -> None:
    reasons = check_component({"path": path, "args": {"tenseal_context_file": context}})
    assert reasons == [] if words is None else (len(reasons) == 1 and words in reasons[0])


# (nested model config, what the guard's own check says without importing it; None: nothing)
UNRESOLVED_NESTED = [
    ({"path": "{mod}.Model"}, None),  # FLARE asks about it on its own, after the allow-list
    ({"path": "{mod}._Model"}, "'_Model' is a private name"),
    ({"path": "{mod}.Model", "args": {"f": "/x"}}, "args.f is an absolute path"),
    ({"config_type": "dict", "path": "{mod}.Model"}, "in a 'dict' config"),
]


@pytest.mark.parametrize(("model", "words"), UNRESOLVED_NESTED)
def test_the_guard_does_not_import_nested_paths_it_is_not_asked_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: dict, words: str | None
) -> None:
    module = f"guard_probe_{tmp_path.name}"  # a fresh module for each case
    marker = tmp_path / "imported"
    code = f"open({str(marker)!r}, 'w').close()\nclass Model: pass\n"
    (tmp_path / f"{module}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = {**model, "path": model["path"].format(mod=module)}
    reasons = check_component({"path": PERSISTOR, "args": {"model": model}}, resolve_nested=False)
    assert not marker.exists()  # an import would have run the module's code
    assert reasons == [] if words is None else (len(reasons) == 1 and words in reasons[0]), reasons
    if words is None:  # resolved, as check_job does offline: imported, and refused
        assert "neither an FLComponent" in check_component({"path": PERSISTOR, "args": {"model": model}})[0]
        assert marker.exists()


def test_every_rule_names_a_real_argument_of_a_real_class() -> None:
    import importlib
    import inspect

    for rule in ARG_RULES:
        module, name = rule.component.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        assert rule.arg in inspect.signature(cls.__init__).parameters, rule


def test_refusals_never_echo_argument_values() -> None:
    planted = "/data/patient_4711_smith.csv"
    config = {"path": PERSISTOR, "args": {"model": {"path": TABULAR, "args": {"f": planted}}, "x": [planted]}}
    reasons = check_component(config)
    assert len(reasons) == 2
    assert not any("4711" in r or "smith" in r for r in reasons)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ("fedhealth.x.Y", "must be a dict"),
        ({"id": "x", "args": {}}, "names no class"),
        ({"name": "SiteExecutor"}, "names no class"),  # FLARE's short names are refused too
        ({"class_path": "subprocess.run"}, "'subprocess.run': it is a function"),
        ({"path": 3}, "is not a dotted Python class path"),
        ({"path": EXECUTOR, "args": ["x"]}, "args must be a dict"),
    ],
)
def test_malformed_component_configs(config: object, words: str) -> None:
    reasons = check_component(config)
    assert len(reasons) == 1 and words in reasons[0], reasons


@pytest.mark.parametrize("job", [j for j in JOBS if j not in FLOWER_JOBS])  # Flower jobs: test_flower_jobs.py
def test_every_component_of_every_shipped_job_is_accepted(job: str) -> None:
    assert check_job(JOBS_DIR / job) == []


def test_components_in_finds_outermost_configs_and_paths_include_nested() -> None:
    config = json.loads((JOBS_DIR / "cxr_fedavg" / "app" / "config" / "config_fed_server.json").read_text())
    found = dict(components_in(config))
    assert found["components[0]"]["path"] == PERSISTOR
    assert "components[0].args.model" not in found  # the persistor's own check covers its model
    assert "workflows[1]" in found and len(found) == len(config["components"]) + len(config["workflows"])
    assert IMAGE_MODEL in component_paths(config) and PERSISTOR in component_paths(config)


def test_check_job_names_file_location_and_reason(tmp_path: Path) -> None:
    import shutil

    job = tmp_path / "heart_fedavg"
    shutil.copytree(JOBS_DIR / "heart_fedavg", job)
    client = job / "app" / "config" / "config_fed_client.json"
    config = json.loads(client.read_text())
    config["components"].append({"id": "x", "path": "fedhealth.data.site_data.write_site", "args": {}})
    client.write_text(json.dumps(config))
    assert check_job(job) == [
        "app/config/config_fed_client.json components[0]: "
        "'fedhealth.data.site_data.write_site': it is a function, not a class"
    ]
