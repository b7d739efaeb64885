"""ComponentGuard in FLARE's own build path: every job component, nested ones included, is checked.

The job's server config is built by FLARE's real ``ServerJsonConfigurator`` with FLARE's own
``authorize_build_component`` (the built-in allow-list check, then ``BEFORE_BUILD_COMPONENT`` to the
site's components), as the server's job process does. The allow-list here is the provisioned one
plus ``fedhealth.data.`` (a site that widened its list), so that what FLARE's list admits is what
the guard must refuse.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.workspace import Workspace
from nvflare.fuel.common.excepts import ComponentNotAuthorized
from nvflare.private.fed.server.server_json_config import ServerJsonConfigurator
from nvflare.private.fed.utils.fed_utils import authorize_build_component

from fedhealth.widgets.component_guard import PREFIX, ComponentGuard
from fedhealth_tools.provision.allow_list import load

JOB = Path(__file__).resolve().parents[3] / "jobs" / "cxr_fedavg"  # its persistor nests a model config
WRITE_SITE = "fedhealth.data.site_data.write_site"
PLANTED = {"path": WRITE_SITE, "args": {"data_root": "planted", "train": [], "test": []}}
# (where the function is planted, FLARE's node path of the refused component)
PLANTS = [
    ("component", "components.#9"),
    ("nested_model", "components.#1.args.model"),  # FLARE asks about the persistor's model itself
]


class Recorder(ComponentGuard):
    """The guard, noting what FLARE asked it about."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        config = fl_ctx.get_prop(FLContextKey.COMPONENT_CONFIG)
        self.seen.append((config.get("path"), fl_ctx.get_prop(FLContextKey.COMPONENT_NODE).path()))
        super().handle_event(event_type, fl_ctx)


def _configure(tmp_path: Path, change=None) -> tuple[ServerJsonConfigurator, Recorder]:
    root = tmp_path / "server"
    for folder in ("startup", "local"):
        (root / folder).mkdir(parents=True)
    allow = {"class_allow_list": [*load(), "fedhealth.data."]}
    (root / "local" / "resources.json").write_text(json.dumps(allow))
    app = root / "job1" / "app_server"
    shutil.copytree(JOB / "app", app)
    config_file = app / "config" / "config_fed_server.json"
    config = json.loads(config_file.read_text())
    if change:
        change(config)
    config_file.write_text(json.dumps(config))
    workspace = Workspace(str(root), "server")
    args = argparse.Namespace(job_id="job1", workspace=str(root), server_config=config_file.name, set=[])
    conf = ServerJsonConfigurator(
        workspace_obj=workspace, config_file_name=str(config_file), args=args, app_root=str(app)
    )
    ctx = FLContext()
    ctx.set_prop(FLContextKey.WORKSPACE_OBJECT, workspace, private=True)
    ctx.set_prop(FLContextKey.CURRENT_JOB_ID, "job1", private=False, sticky=False)
    ctx.set_prop(FLContextKey.JOB_META, {}, private=True, sticky=False)
    guard = Recorder()
    conf.set_component_build_authorizer(authorize_build_component, fl_ctx=ctx, event_handlers=[guard])
    return conf, guard


def _plant(where: str):
    def change(config: dict) -> None:
        if where == "component":
            config["components"].append({"id": "planted", **PLANTED})
        elif where == "nested_model":
            config["components"][0]["args"]["model"] = dict(PLANTED)
        else:
            config["components"][0]["args"]["model"] = {"config_type": "dict", **PLANTED}

    return change


def test_flare_asks_the_guard_about_every_component_nested_included(tmp_path: Path) -> None:
    conf, guard = _configure(tmp_path)
    conf.configure()
    seen = dict((node, path) for path, node in guard.seen)
    assert seen["components.#1"] == "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor"
    assert seen["components.#1.args.model"] == "fedhealth.models.image_model.ImageModel"
    assert seen["workflows.#1"] == "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather"
    assert len(seen) == 11  # 8 components + the persistor's model + 2 workflows
    assert not (tmp_path / "server" / "planted").exists()


@pytest.mark.parametrize(("where", "node"), PLANTS)
def test_a_planted_function_is_refused_before_anything_is_built(
    tmp_path: Path, where: str, node: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a relative data_root would land if the function ran
    conf, _ = _configure(tmp_path, _plant(where))
    with pytest.raises(ComponentNotAuthorized) as refused:
        conf.configure()
    text = str(refused.value)
    assert f"component not authorized: {PREFIX} the component at '{node}': " in text
    assert f"'{WRITE_SITE}': it is a function, not a class" in text
    assert not (tmp_path / "planted").exists()


def test_a_dict_config_flare_never_checks_is_refused_with_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    conf, guard = _configure(tmp_path, _plant("dict_model"))
    with pytest.raises(ComponentNotAuthorized) as refused:
        conf.configure()
    assert (
        f"{PREFIX} the component at 'components.#1': "
        "'nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor': "
        "args.model names a class in a 'dict' config, which the site cannot check"
    ) in str(refused.value)
    assert [node for _, node in guard.seen] == ["components.#1"]  # FLARE never asked about the model
    assert not (tmp_path / "planted").exists()


def test_the_guard_only_answers_before_build_component() -> None:
    ctx = FLContext()
    ctx.set_prop(FLContextKey.COMPONENT_CONFIG, {"path": "subprocess.run"}, private=True, sticky=False)
    guard = ComponentGuard()
    guard.handle_event(EventType.START_RUN, ctx)
    assert ctx.get_prop(FLContextKey.COMPONENT_BUILD_ERROR) is None
    guard.handle_event(EventType.BEFORE_BUILD_COMPONENT, ctx)
    assert ctx.get_prop(FLContextKey.COMPONENT_BUILD_ERROR) == (
        f"{PREFIX} the component at 'the job config': 'subprocess.run': it is a function, not a class"
    )
