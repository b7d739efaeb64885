"""The specs' federation block: min_clients as a share of the sites; every shipped job tolerant or excused."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from fedhealth_tools.jobs.federation import federation_values, min_clients, resolve
from fedhealth_tools.jobs.merge import SpecError
from fedhealth_tools.jobs.spec import SPECS_DIR, render_all

BLOCK = {"sites": 4, "min_fraction": 0.75, "wait_time_after_min_received": 30, "train_timeout": 300}
# (sites, min_fraction, min_clients)
SHARES = [
    (4, 0.75, 3),
    (4, 1.0, 4),
    (4, 0.5, 2),
    (3, 0.75, 3),  # ceil(2.25)
    (10, 0.7, 7),  # 0.7 * 10 is 7.000000000000001 in floating point: still 7
    (4, 0.01, 1),  # at least one site
    (1, 0.5, 1),
]
# (case, the block's changes, the start of the message after "spec.json: job_x.federation: ")
BAD_BLOCKS: list[tuple[str, Any, str]] = [
    ("not an object", [4, 0.75], "the federation block must be an object, not list"),
    ("missing key", {"train_timeout": None}, "the federation block needs exactly ['sites', 'min_fraction', "),
    ("unknown key", {"min_sites": 3}, "the federation block needs exactly"),
    ("no sites", {"sites": 0}, "federation sites must be a whole number of sites >= 1, got 0"),
    ("sites a bool", {"sites": True}, "federation sites must be a whole number of sites >= 1, got True"),
    ("fraction 0", {"min_fraction": 0}, "federation min_fraction must be a number in (0, 1]"),
    ("fraction above 1", {"min_fraction": 1.5}, "federation min_fraction must be a number in (0, 1]"),
    ("fraction a string", {"min_fraction": "0.75"}, "federation min_fraction must be a number in (0, 1]"),
    ("fraction NaN", {"min_fraction": math.nan}, "federation min_fraction must be a number in (0, 1]"),
    (
        "negative wait",
        {"wait_time_after_min_received": -1},
        "federation wait_time_after_min_received must be",
    ),
    (
        "fractional timeout",
        {"train_timeout": 2.5},
        "federation train_timeout must be a whole number of seconds",
    ),
]
WHERE = "spec.json: job_x.federation"
# Jobs that keep every site, each for a reason job_specs/README.md gives under "Slow and missing sites".
# heart_flower: the Flower ServerApp trains with the SuperNodes FLARE started (min-nodes = every site).
NEEDS_EVERY_SITE = {"heart_clustered", "heart_xgboost", "heart_flower"}
# Workflows that train in rounds, by the kit's and FLARE's class names.
TRAINING = (
    "ScatterAndGather",
    "ScatterAndGatherScaffold",
    "SampledScatterAndGather",
    "SecAggController",
    "ClusteredController",
)


@pytest.mark.parametrize(("sites", "fraction", "expected"), SHARES)
def test_min_clients_is_the_rounded_up_share_of_the_sites(sites: int, fraction: float, expected: int) -> None:
    assert min_clients(sites, fraction) == expected
    assert (
        federation_values({**BLOCK, "sites": sites, "min_fraction": fraction}, where=WHERE)["min_clients"]
        == expected
    )


@pytest.mark.parametrize(("case", "change", "message"), BAD_BLOCKS, ids=[c[0] for c in BAD_BLOCKS])
def test_a_bad_block_is_named_with_its_spec_and_job(case: str, change: Any, message: str) -> None:
    if isinstance(change, dict):
        block: Any = {k: v for k, v in {**BLOCK, **change}.items() if v is not None}
    else:
        block = change
    with pytest.raises(SpecError) as info:
        federation_values(block, where=WHERE)
    assert str(info.value).startswith(f"{WHERE}: {message}")


def test_references_resolve_and_a_bad_one_says_where() -> None:
    values = federation_values(BLOCK, where=WHERE)
    data = {"args": {"min_clients": {"$federation": "min_clients"}, "n": [{"$federation": "sites"}]}}
    assert resolve(data, values, where="x") == {"args": {"min_clients": 3, "n": [4]}}
    assert data["args"]["min_clients"] == {"$federation": "min_clients"}  # the spec is not modified
    with pytest.raises(
        SpecError, match=r"^x\.args\.min_clients: unknown \$federation 'min_client'; use one of"
    ):
        resolve({"args": {"min_clients": {"$federation": "min_client"}}}, values, where="x")
    with pytest.raises(
        SpecError, match=r"^x\.a: a reference is \{\"\$federation\": \"name\"\} and nothing else"
    ):
        resolve({"a": {"$federation": "sites", "default": 4}}, values, where="x")
    with pytest.raises(SpecError, match=r"^x\.a: \$federation 'sites' needs a federation block"):
        resolve({"a": {"$federation": "sites"}}, None, where="x")


def _family(tmp_path: Path, jobs: dict, federation: dict | None = BLOCK) -> Path:
    sag = {
        "id": "sag",
        "path": "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather",
        "args": {
            "min_clients": {"$federation": "min_clients"},
            "wait_time_after_min_received": {"$federation": "wait_time_after_min_received"},
            "train_timeout": {"$federation": "train_timeout"},
        },
    }
    defaults: dict[str, Any] = {
        "meta": {"min_clients": {"$federation": "min_clients"}},
        "client": {"executors": []},
        "server": {"workflows": [sag]},
    }
    if federation is not None:
        defaults = {"federation": federation, **defaults}
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "fam.json").write_text(json.dumps({"family": "fam", "defaults": defaults, "jobs": jobs}))
    return specs


def test_a_job_overrides_its_familys_block_and_extends_inherit_it(tmp_path: Path) -> None:
    jobs = {
        "fam_default": {},
        "fam_all": {"federation": {"min_fraction": 1.0}},
        "fam_all_slow": {"$extends": "fam_all", "federation": {"train_timeout": 3600}},
        "fam_literal": {"server": {"workflows": {"sag": {"args": {"min_clients": 2}}}}},
    }
    rendered = render_all(_family(tmp_path, jobs))
    got = {
        name: (
            files["meta.json"]["min_clients"],
            *files["app/config/config_fed_server.json"]["workflows"][0]["args"].values(),
        )
        for name, files in rendered.items()
    }
    assert got == {
        "fam_default": (3, 3, 30, 300),
        "fam_all": (4, 4, 30, 300),
        "fam_all_slow": (4, 4, 30, 3600),
        "fam_literal": (3, 2, 30, 300),  # a plain number in a patch wins over the reference
    }


@pytest.mark.parametrize(
    ("jobs", "federation", "message"),
    [
        (
            {"fam_x": {"federation": {"min_fraction": 0}}},
            BLOCK,
            "fam.json: fam_x.federation: federation min_fraction",
        ),
        (
            {"fam_x": {}},
            None,
            "fam.json: fam_x.meta.min_clients: $federation 'min_clients' needs a federation",
        ),
        (
            {"fam_x": {"federation": {"sites": 4}}},
            None,
            "fam.json: fam_x.federation: the federation block needs",
        ),
    ],
    ids=["bad override", "reference without a block", "a job's partial block"],
)
def test_render_errors_name_the_spec_and_job(
    tmp_path: Path, jobs: dict, federation: dict | None, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        render_all(_family(tmp_path, jobs, federation))
    assert str(info.value).startswith(message)


def test_defaults_may_hold_only_the_files_and_the_federation_block(tmp_path: Path) -> None:
    specs = _family(tmp_path, {"fam_x": {}})
    spec = json.loads((specs / "fam.json").read_text())
    spec["defaults"]["federated"] = {}
    (specs / "fam.json").write_text(json.dumps(spec))
    with pytest.raises(SpecError, match=r"'defaults' must hold exactly \['client', 'meta', 'server'\] \(and"):
        render_all(specs)


def _shipped() -> dict[str, tuple[int, int, list[dict]]]:
    """job -> (its family's sites, meta.json min_clients, its training workflows' args)."""
    sites = {}
    for path in SPECS_DIR.glob("*.json"):
        spec = json.loads(path.read_text())
        for job in spec["jobs"]:
            sites[job] = spec["defaults"]["federation"]["sites"]
    out = {}
    for job, files in render_all(SPECS_DIR).items():
        workflows = files["app/config/config_fed_server.json"]["workflows"]
        training = [w["args"] for w in workflows if w["path"].rsplit(".", 1)[1] in TRAINING]
        out[job] = (sites[job], files["meta.json"]["min_clients"], training)
    return out


@pytest.mark.parametrize("job", sorted(_shipped()))
def test_every_shipped_job_goes_on_without_a_site_or_is_excused(job: str) -> None:
    sites, meta_min, training = _shipped()[job]
    if job in NEEDS_EVERY_SITE:
        assert meta_min == sites
        return
    assert 1 <= meta_min < sites, f"{job}: meta.json min_clients {meta_min} of {sites} sites"
    for args in training:
        assert args["min_clients"] == meta_min
        assert args["train_timeout"] > 0  # a round that waits on a hung site ends
        if "wait_time_after_min_received" in args:
            assert args["wait_time_after_min_received"] > 0  # a slow site gets time to answer


def test_the_readme_explains_each_job_that_needs_every_site() -> None:
    readme = (SPECS_DIR / "README.md").read_text()
    section = readme.split("## Slow and missing sites", 1)[1]
    for job in NEEDS_EVERY_SITE:
        assert f"`{job}`" in section, job


def _literal_min_clients(node: Any, out: list[int]) -> list[int]:
    """Every ``min_clients`` in a spec that is a plain number, not a ``$federation`` reference."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "min_clients" and not isinstance(value, dict):
                out.append(value)
            _literal_min_clients(value, out)
    elif isinstance(node, list):
        for value in node:
            _literal_min_clients(value, out)
    return out


def test_the_shipped_specs_reference_the_block_instead_of_repeating_the_site_count() -> None:
    """``min_clients`` comes from the federation block; the one plain number is a sampling job's K."""
    found = {}
    for path in sorted(SPECS_DIR.glob("*.json")):
        spec = json.loads(path.read_text())
        found[("defaults", path.name)] = _literal_min_clients(spec["defaults"], [])
        for job, patch in spec["jobs"].items():
            found[(job, path.name)] = _literal_min_clients(patch, [])
    assert {k: v for k, v in found.items() if v} == {("heart_client_dp_sampled", "heart.json"): [3]}


def test_copying_the_specs_and_changing_the_site_count_moves_every_min_clients(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    shutil.copytree(SPECS_DIR, specs)
    spec = json.loads((specs / "heart.json").read_text())
    spec["defaults"]["federation"]["sites"] = 8
    (specs / "heart.json").write_text(json.dumps(spec))
    rendered = render_all(specs)
    assert rendered["heart_fedavg"]["meta.json"]["min_clients"] == 6
    assert rendered["heart_dp"]["meta.json"]["min_clients"] == 4  # its own min_fraction 0.5
    assert rendered["heart_clustered"]["meta.json"]["min_clients"] == 8
    client_dp = rendered["heart_client_dp"]["app/config/config_fed_server.json"]["components"]
    aggregator = next(c for c in client_dp if c["id"] == "aggregator")["args"]
    assert aggregator["expected_sites"] == aggregator["total_sites"] == 8
