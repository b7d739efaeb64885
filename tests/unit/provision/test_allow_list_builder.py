"""AllowListBuilder: the exact allow-list, the guard and no log streaming in every kit; a real POC run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from nvflare.app_common.default_component_policy import DEFAULT_CLASS_ALLOW_LIST

from fedhealth_tools.poc.variants import FAULT_FILTER, project_allowing
from fedhealth_tools.poc.workspace import PocLayout, prepare_workspace, write_heart_data, write_heart_rows
from fedhealth_tools.provision.allow_list import load
from fedhealth_tools.provision.allow_list_builder import (
    GUARD,
    JOB_LOG_STREAMER,
    AllowListBuilder,
    check_entries,
    site_resources,
)

REPO = Path(__file__).resolve().parents[3]
SHIPPED = load()
# FLARE default entries a hospital should not accept from a stranger: file writers, log streamer.
UNWANTED_DEFAULTS = (
    "nvflare.app_common.statistics.json_stats_file_persistor.JsonStatsFileWriter",
    "nvflare.app_common.psi.file_psi_writer.FilePSIWriter",
    "nvflare.app_common.logging.job_log_streamer.JobLogStreamer",
)
# (entry, the words of the refusal)
BAD_ENTRIES = [
    ("fedhealth.", "is a package prefix"),
    ("nvflare.app_common.", "is a package prefix"),
    ("*", "is a package prefix"),
    ("fedhealth", "must be a full class path"),
    ("", "must be a dotted class path"),
    (" fedhealth.x.Y", "must be a dotted class path"),
    (3, "must be a dotted class path"),
]
# (extra entry, the words of the refusal) at the builder: it imports each, calling nothing
NOT_CLASSES = [
    ("fedhealth.data.site_data.write_site", "it is a function, not a class"),
    ("subprocess.run", "it is a function, not a class"),
    ("fedhealth.executors.site_executor.Path", "alias of 'pathlib.Path'"),
]
# site -> (train rows, test rows) of FLamby's rows (task "heart") written into that site's own kit
SITE_ROWS = {
    "cleveland": (199, 104),
    "hungary": (172, 89),
    "switzerland": (30, 16),
    "va_long_beach": (85, 45),
}
# site -> (train rows, test rows) of its heart export (all 920 patients, FLamby's split kept)
SITE_EXPORT_ROWS = {
    "cleveland": (199, 104),
    "hungary": (193, 101),
    "switzerland": (80, 43),
    "va_long_beach": (131, 69),
}


@pytest.mark.parametrize(("entry", "words"), BAD_ENTRIES)
def test_prefixes_and_bare_names_are_refused(entry: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_entries(["fedhealth.filters.update_audit.UpdateAudit", entry])
    with pytest.raises(ValueError, match=words):
        AllowListBuilder(extra=[entry])


@pytest.mark.parametrize(("entry", "words"), NOT_CLASSES)
def test_extra_entries_must_be_component_classes(entry: str, words: str) -> None:
    with pytest.raises(ValueError, match="not component classes") as refused:
        AllowListBuilder(extra=[entry])
    assert f"{entry}: " in str(refused.value) and words in str(refused.value)


def test_the_list_is_the_shipped_one_plus_extra() -> None:
    assert AllowListBuilder().allow == SHIPPED
    assert AllowListBuilder(extra=[FAULT_FILTER, FAULT_FILTER]).allow == [*SHIPPED, FAULT_FILTER]
    persistor = "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor"
    assert AllowListBuilder(extra=[persistor]).allow == SHIPPED  # already there


# (stream_logs argument, the resulting allow_log_streaming (None: the key is left alone), the extra
# entry: a streaming site must allow the JobLogStreamer FLARE's SiteLogStreamer injects in every job)
RESOURCE_CASES = [(False, False, []), (True, True, [JOB_LOG_STREAMER]), (None, "absent", [])]


@pytest.mark.parametrize(("stream", "expected", "streamer"), RESOURCE_CASES)
def test_site_resources_replace_the_list_and_add_the_guard_once(stream, expected, streamer) -> None:
    resources = {
        "format_version": 2,
        "class_allow_list": list(DEFAULT_CLASS_ALLOW_LIST),
        "components": [{"id": "x", "path": "a.B"}],
    }
    out = site_resources(resources, SHIPPED, stream_logs=stream)
    assert out["class_allow_list"] == [*SHIPPED, *streamer]
    assert out["components"] == [
        {"id": "x", "path": "a.B"},
        {"id": "component_guard", "path": GUARD, "args": {}},
    ]
    assert out.get("allow_log_streaming", "absent") == expected
    assert site_resources(out, SHIPPED, stream_logs=stream) == out  # idempotent
    assert resources["class_allow_list"] == list(DEFAULT_CLASS_ALLOW_LIST)  # input untouched


@pytest.fixture(scope="module")
def poc(tmp_path_factory: pytest.TempPathFactory) -> PocLayout:
    """One real ``nvflare poc prepare -i project.yml`` run (a few seconds)."""
    return prepare_workspace(REPO / "provision" / "poc.yml", tmp_path_factory.mktemp("poc"))


def test_layout_matches_project(poc: PocLayout) -> None:
    assert (poc.server, poc.admin, poc.port) == ("server", "admin@fedhealth.org", 8102)
    assert poc.sites == tuple(SITE_ROWS)
    assert poc.prod_dir == poc.root / "fedhealth_poc" / "prod_00"


def _resources(poc: PocLayout, name: str) -> list[dict]:
    local = poc.kit(name) / "local"
    files = [p for p in (local / "resources.json.default", local / "resources.json") if p.is_file()]
    assert local / "resources.json.default" in files
    return [json.loads(p.read_text()) for p in files]


@pytest.mark.parametrize("name", ["server", *SITE_ROWS])
def test_kits_allow_exactly_the_shipped_components(poc: PocLayout, name: str) -> None:
    for resources in _resources(poc, name):
        allow = resources["class_allow_list"]
        assert allow == SHIPPED
        assert not [e for e in allow if e.endswith(".") or e == "*"]
        assert not set(UNWANTED_DEFAULTS) & set(allow)
        guards = [c for c in resources["components"] if c["path"] == GUARD]
        assert guards == [{"id": "component_guard", "path": GUARD, "args": {}}]
        if name != "server":
            assert resources["allow_log_streaming"] is False


def test_a_test_federation_allows_the_drill_filter_explicitly(tmp_path: Path) -> None:
    import yaml

    project = project_allowing(REPO / "provision" / "poc.yml", tmp_path / "project.yml", [FAULT_FILTER])
    builders = yaml.safe_load(project.read_text())["builders"]
    (entry,) = [b for b in builders if b["path"].endswith("AllowListBuilder")]
    assert entry["args"] == {"extra": [FAULT_FILTER]}
    assert FAULT_FILTER not in SHIPPED  # the shipped project does not allow it
    assert "extra" not in (REPO / "provision" / "poc.yml").read_text()


def test_server_listens_on_loopback(poc: PocLayout) -> None:
    config = json.loads((poc.kit("server") / "startup" / "fed_server.json").read_text())
    assert [s["service"]["target"] for s in config["servers"]] == [f"127.0.0.1:{poc.port}"]


@pytest.mark.parametrize("site", SITE_ROWS)
def test_clients_target_loopback(poc: PocLayout, site: str) -> None:
    config = json.loads((poc.kit(site) / "startup" / "fed_client.json").read_text())
    targets = [s["service"]["target"] for s in config["servers"]]
    assert targets and all(t.startswith("127.0.0.1:") for t in targets)
    assert targets == [f"127.0.0.1:{poc.port}"]


def test_admin_uses_loopback(poc: PocLayout) -> None:
    config = json.loads((poc.kit(poc.admin) / "startup" / "fed_admin.json").read_text())
    assert config["admin"]["host"] == "127.0.0.1"
    assert config["admin"]["port"] == poc.port


def _common_name(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@pytest.mark.parametrize(
    ("name", "cert_file"), [("server", "server.crt")] + [(s, "client.crt") for s in SITE_ROWS]
)
def test_certificates_are_real_x509(poc: PocLayout, name: str, cert_file: str) -> None:
    startup = poc.kit(name) / "startup"
    cert = x509.load_pem_x509_certificate((startup / cert_file).read_bytes())
    root = x509.load_pem_x509_certificate((startup / "rootCA.pem").read_bytes())
    assert _common_name(cert) == name
    assert cert.issuer == root.subject
    assert (startup / cert_file.replace(".crt", ".key")).is_file()


def test_write_heart_data_gives_each_site_its_own_export_and_mapping(poc: PocLayout) -> None:
    sizes = write_heart_data(poc)  # what the shipped heart jobs (task "tabular") read
    assert sizes == SITE_EXPORT_ROWS
    for site, (n_train, n_test) in SITE_EXPORT_ROWS.items():
        kit = poc.kit(site)
        settings = json.loads((kit / "local" / "fedhealth_site.json").read_text())
        assert settings == {"data_root": "data"}
        folder = kit / "data" / "heart_disease"
        assert sorted(p.name for p in folder.iterdir()) == ["mapping.json", "test.csv", "train.csv"]
        assert json.loads((folder / "mapping.json").read_text())["target"]["column"]
        for file, n in (("train.csv", n_train), ("test.csv", n_test)):
            assert len((folder / file).read_text().strip().splitlines()) == n + 1  # header + rows
    assert not (poc.kit("server") / "data").exists()


def test_write_heart_rows_gives_each_site_its_own_flamby_rows(poc: PocLayout) -> None:
    sizes = write_heart_rows(poc)  # task "heart": FLamby's rows, no mapping
    assert sizes == SITE_ROWS
    for site, (n_train, n_test) in SITE_ROWS.items():
        folder = poc.kit(site) / "data" / "heart_disease"
        for file, n in (("train.csv", n_train), ("test.csv", n_test)):
            assert len((folder / file).read_text().strip().splitlines()) == n + 1  # header + rows
    assert not (poc.kit("server") / "data").exists()
