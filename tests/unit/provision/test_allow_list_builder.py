"""AllowListBuilder: fedhealth on every kit's class allow-list; a real POC provisioning run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from nvflare.app_common.default_component_policy import DEFAULT_CLASS_ALLOW_LIST

from fedhealth_tools.poc.workspace import PocLayout, prepare_workspace, write_heart_data
from fedhealth_tools.provision.allow_list_builder import DEFAULT_EXTRA, add_to_allow_list

REPO = Path(__file__).resolve().parents[3]
PERSISTOR = "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor"
SCAFFOLD = "nvflare.app_common.workflows.scatter_and_gather_scaffold.ScatterAndGatherScaffold"
# (existing class_allow_list or None for none, expected list after adding DEFAULT_EXTRA)
ADD_CASES = [
    (None, [*DEFAULT_CLASS_ALLOW_LIST, *DEFAULT_EXTRA]),
    (["my.pkg."], ["my.pkg.", *DEFAULT_EXTRA]),
    (["fedhealth.", "x.Y"], ["fedhealth.", "x.Y", PERSISTOR, SCAFFOLD]),
    ([], list(DEFAULT_EXTRA)),
]
BARE_ENTRIES = [["fedhealth"], ["fedhealth.", "torch"]]
# site -> (train rows, test rows) written into that site's own kit
SITE_ROWS = {
    "cleveland": (199, 104),
    "hungary": (172, 89),
    "switzerland": (30, 16),
    "va_long_beach": (85, 45),
}


@pytest.mark.parametrize(("existing", "expected"), ADD_CASES)
def test_add_to_allow_list(tmp_path: Path, existing: list[str] | None, expected: list[str]) -> None:
    path = tmp_path / "resources.json"
    resources = {"format_version": 2, "components": [{"id": "x", "path": "a.B"}]}
    if existing is not None:
        resources["class_allow_list"] = existing
    path.write_text(json.dumps(resources))
    assert add_to_allow_list(path, list(DEFAULT_EXTRA)) == expected
    written = json.loads(path.read_text())
    assert written["class_allow_list"] == expected
    assert written["components"] == resources["components"]  # everything else kept
    assert add_to_allow_list(path, list(DEFAULT_EXTRA)) == expected  # idempotent
    assert json.loads(path.read_text())["class_allow_list"] == expected


def test_default_extra() -> None:
    assert DEFAULT_EXTRA == ("fedhealth.", PERSISTOR, SCAFFOLD)
    for path in (PERSISTOR, SCAFFOLD):  # why the builder must add them
        assert not any(path.startswith(prefix) for prefix in DEFAULT_CLASS_ALLOW_LIST)


@pytest.mark.parametrize("entries", BARE_ENTRIES)
def test_bare_entry_is_rejected_before_writing(tmp_path: Path, entries: list[str]) -> None:
    path = tmp_path / "resources.json"
    path.write_text(json.dumps({"class_allow_list": ["a."]}))
    with pytest.raises(ValueError, match=r"must end with '\.'"):
        add_to_allow_list(path, entries)
    assert json.loads(path.read_text()) == {"class_allow_list": ["a."]}


@pytest.fixture(scope="module")
def poc(tmp_path_factory: pytest.TempPathFactory) -> PocLayout:
    """One real ``nvflare poc prepare -i project.yml`` run (about a second or two)."""
    return prepare_workspace(REPO / "provision" / "poc.yml", tmp_path_factory.mktemp("poc"))


def test_layout_matches_project(poc: PocLayout) -> None:
    assert (poc.server, poc.admin, poc.port) == ("server", "admin@fedhealth.org", 8102)
    assert poc.sites == tuple(SITE_ROWS)
    assert poc.prod_dir == poc.root / "fedhealth_poc" / "prod_00"


@pytest.mark.parametrize("name", ["server", *SITE_ROWS])
def test_kits_allow_fedhealth(poc: PocLayout, name: str) -> None:
    local = poc.kit(name) / "local"
    files = [p for p in (local / "resources.json.default", local / "resources.json") if p.is_file()]
    assert local / "resources.json.default" in files
    for path in files:
        allow = json.loads(path.read_text())["class_allow_list"]
        assert "fedhealth." in allow and PERSISTOR in allow
        assert set(DEFAULT_CLASS_ALLOW_LIST) <= set(allow)
        assert len(allow) == len(set(allow))


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


def test_write_heart_data_gives_each_site_its_own_rows(poc: PocLayout) -> None:
    sizes = write_heart_data(poc)
    assert sizes == SITE_ROWS
    for site, (n_train, n_test) in SITE_ROWS.items():
        kit = poc.kit(site)
        settings = json.loads((kit / "local" / "fedhealth_site.json").read_text())
        assert settings == {"data_root": "data"}
        folder = kit / "data" / "heart_disease"
        assert sorted(p.name for p in folder.iterdir()) == ["test.csv", "train.csv"]
        for file, n in (("train.csv", n_train), ("test.csv", n_test)):
            assert len((folder / file).read_text().strip().splitlines()) == n + 1  # header + rows
    assert not (poc.kit("server") / "data").exists()
