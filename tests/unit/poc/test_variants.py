"""Job and project variants: the copy changes exactly the named settings; the original stays."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fedhealth.constants import HEART_SITES
from fedhealth_tools.poc.variants import (
    FAULT_FILTER,
    SITE_POLICY_BUILDER,
    job_variant,
    project_on_port,
    project_with_default_scopes,
    project_without_gpus,
)

ROOT = Path(__file__).resolve().parents[3]
JOB = ROOT / "jobs" / "heart_fedprox"


def _server(job: Path, app: str = "app") -> dict:
    return json.loads((job / app / "config" / "config_fed_server.json").read_text())


def _sag(config: dict) -> dict:
    return next(w["args"] for w in config["workflows"] if "num_rounds" in w["args"])


def test_resilient_settings_are_written_to_the_copy_only(tmp_path: Path) -> None:
    before = (JOB / "app" / "config" / "config_fed_server.json").read_text()
    job = job_variant(
        JOB,
        tmp_path / "job",
        rounds=5,
        min_sites=3,
        wait_after_min_s=3,
        train_timeout_s=20,
        cse_timeout_s=15,
        dead_client_grace_s=5,
    )
    config = _server(job)
    sag = _sag(config)
    assert (
        sag["num_rounds"],
        sag["min_clients"],
        sag["wait_time_after_min_received"],
        sag["train_timeout"],
    ) == (
        5,
        3,
        3,
        20,
    )
    cse = next(w["args"] for w in config["workflows"] if w["id"] == "cross_site_eval")
    assert cse["submit_model_timeout"] == cse["validation_timeout"] == 15
    assert config["dead_client_grace_period"] == 5
    assert json.loads((job / "meta.json").read_text())["min_clients"] == 3
    assert (JOB / "app" / "config" / "config_fed_server.json").read_text() == before


def test_a_faulty_site_gets_its_own_app_with_the_drill_filter(tmp_path: Path) -> None:
    job = job_variant(JOB, tmp_path / "job", faulty_site="va_long_beach", fault={"mode": "nan"})
    deploy = json.loads((job / "meta.json").read_text())["deploy_map"]
    assert deploy["app_fault"] == ["va_long_beach"]
    assert deploy["app"] == ["server", *[s for s in HEART_SITES if s != "va_long_beach"]]
    client = json.loads((job / "app_fault" / "config" / "config_fed_client.json").read_text())
    assert client["task_result_filters"][0]["filters"][0] == {"path": FAULT_FILTER, "args": {"mode": "nan"}}
    clean = json.loads((job / "app" / "config" / "config_fed_client.json").read_text())
    assert clean["task_result_filters"] == []


def test_project_on_port_moves_only_the_server_port(tmp_path: Path) -> None:
    path = project_on_port(ROOT / "provision" / "poc.yml", tmp_path / "p.yml", 9001)
    project = yaml.safe_load(path.read_text())
    server = next(p for p in project["participants"] if p["type"] == "server")
    assert server["fed_learn_port"] == server["admin_port"] == 9001
    assert [p["name"] for p in project["participants"]] == [
        p["name"] for p in yaml.safe_load((ROOT / "provision" / "poc.yml").read_text())["participants"]
    ]


def test_project_with_he_inserts_hebuilder_before_signing(tmp_path: Path) -> None:
    from fedhealth_tools.poc.variants import HE_BUILDER, SIGNATURE_BUILDER, project_with_he

    before = (ROOT / "provision" / "poc.yml").read_text()
    dest = project_with_he(ROOT / "provision" / "poc.yml", tmp_path / "he.yml", poly_modulus_degree=16384)
    builders = [b["path"] for b in yaml.safe_load(dest.read_text())["builders"]]
    assert builders.index(HE_BUILDER) == builders.index(SIGNATURE_BUILDER) - 1
    assert yaml.safe_load(dest.read_text())["builders"][builders.index(HE_BUILDER)]["args"] == {
        "poly_modulus_degree": 16384
    }
    again = project_with_he(dest, tmp_path / "he2.yml")  # already there: not added twice
    assert [b["path"] for b in yaml.safe_load(again.read_text())["builders"]].count(HE_BUILDER) == 1
    assert (ROOT / "provision" / "poc.yml").read_text() == before


def test_project_with_he_needs_signing(tmp_path: Path) -> None:
    import pytest

    from fedhealth_tools.poc.variants import project_with_he

    project = yaml.safe_load((ROOT / "provision" / "poc.yml").read_text())
    project["builders"] = [b for b in project["builders"] if "signature" not in b["path"]]
    (tmp_path / "p.yml").write_text(yaml.safe_dump(project))
    with pytest.raises(ValueError, match="HE contexts must be signed"):
        project_with_he(tmp_path / "p.yml", tmp_path / "out.yml")


def test_executor_args_are_merged_for_he_with_dp(tmp_path: Path) -> None:
    dp = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5}
    job = job_variant(ROOT / "jobs" / "heart_he", tmp_path / "job", executor_args={"dp": dp})
    client = json.loads((job / "app" / "config" / "config_fed_client.json").read_text())
    args = client["executors"][0]["executor"]["args"]
    assert args["dp"] == dp and args["batch_size"] == 16  # the job's own settings stay
    paths = [f["path"] for f in client["task_result_filters"][0]["filters"]]
    assert paths[-1].endswith("HEModelEncryptor") and paths[0].endswith("UpdateGuard")  # guard, then encrypt


def test_project_without_gpus_drops_only_the_sites_capacity(tmp_path: Path) -> None:
    source = yaml.safe_load((ROOT / "project.yml").read_text())
    assert any("capacity" in p for p in source["participants"])  # the shipped file has GPU sites
    copy = yaml.safe_load(project_without_gpus(ROOT / "project.yml", tmp_path / "p.yml").read_text())
    assert not any("capacity" in p for p in copy["participants"])
    strip = [{k: v for k, v in p.items() if k != "capacity"} for p in source["participants"]]
    assert copy["participants"] == strip and copy["builders"] == source["builders"]


def test_project_with_default_scopes_gives_switzerland_the_default(tmp_path: Path) -> None:
    def policy(project: dict) -> dict:
        return next(b for b in project["builders"] if b["path"] == SITE_POLICY_BUILDER)["args"]

    source = yaml.safe_load((ROOT / "project.yml").read_text())
    assert policy(source)["sites"]["switzerland"]["scopes"] == ["strict"]
    copy = yaml.safe_load(project_with_default_scopes(ROOT / "project.yml", tmp_path / "p.yml").read_text())
    assert policy(copy)["sites"] == {}
    assert policy(copy)["default"] == policy(source)["default"]
