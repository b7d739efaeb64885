"""Encryption section of the run report: parameters, layers in clear, bytes per site per round."""

from __future__ import annotations

import pytest

from fedhealth import constants as C
from fedhealth.reports.encryption import encryption_markdown, encryption_section
from fedhealth.reports.run_report import build_report, to_markdown

PARAMS = {"scheme": "CKKS", "poly_modulus_degree": 8192, "slots": 4096, "scale_bits": 40}


def _facts(sent: int, plain: int, clear: list[str]) -> dict:
    encrypted = [n for n in ("net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias") if n not in clear]
    return {
        **PARAMS,
        "encrypted_layers": encrypted,
        "clear_layers": clear,
        "values_encrypted": 240 if "net.0.bias" in clear else 256,
        "values_clear": 17 if clear else 0,
        C.M_HE_BYTES_SENT: sent,
        C.M_HE_BYTES_PLAIN: plain,
    }


def _record(clear: list[str], sizes: dict[str, list[int]], tasks: tuple[str, ...] = (C.TASK_TRAIN,)) -> dict:
    rounds = []
    for i in range(max(len(v) for v in sizes.values())):
        sites = {
            site: {"round": i, C.M_N_TEST: 10, C.M_HE: _facts(sent[i], 2_000, clear)}
            for site, sent in sizes.items()
            if i < len(sent)
        }
        rounds.append({"round": i, "sites": sites})
    return {"job_id": "j", "rounds": rounds, "tasks": list(tasks)}


HEART = (C.TASK_FED_STATS, C.TASK_SET_SCALING, C.TASK_TRAIN, C.TASK_VALIDATE)  # a run with a fed_stats step
TABULAR = (C.TASK_EHR_PROFILE, C.TASK_SET_SCHEMA, C.TASK_TRAIN, C.TASK_VALIDATE)  # with the alignment step
IMAGING = (C.TASK_TRAIN, C.TASK_VALIDATE)
# (layers left in clear, per-site bytes sent per round, expected bytes per round per site, expected ratio,
#  the tasks that ran: the fed_stats moments and the alignment profiles are named as in clear only where
#  that step ran)
CASES = [
    (
        [],
        {"a": [1_800_000, 1_800_000], "b": [1_700_000, 1_900_000]},
        {"a": 1_800_000, "b": 1_800_000},
        900.0,
        HEART,
    ),
    (
        ["net.0.bias", "net.3.bias"],
        {"a": [900_000], "b": [1_000_000]},
        {"a": 900_000, "b": 1_000_000},
        None,
        IMAGING,
    ),
    (
        [],
        {"a": [1_800_000], "b": [1_800_000]},
        {"a": 1_800_000, "b": 1_800_000},
        900.0,
        TABULAR,
    ),
]


@pytest.mark.parametrize(("clear", "sizes", "per_round", "ratio", "tasks"), CASES)
def test_section_totals_per_site(
    clear: list[str], sizes: dict, per_round: dict, ratio: float | None, tasks: tuple[str, ...]
) -> None:
    section = encryption_section(_record(clear, sizes, tasks))
    assert {k: section[k] for k in PARAMS} == PARAMS
    assert section["clear_layers"] == sorted(clear)
    assert set(section["encrypted_layers"]).isdisjoint(clear) and len(section["encrypted_layers"]) == 4 - len(
        clear
    )
    for site, expected in per_round.items():
        row = section["sites"][site]
        assert row["rounds"] == len(sizes[site])
        assert row["bytes_per_round"] == pytest.approx(expected)
        assert row["plain_bytes_per_round"] == pytest.approx(2_000)
        if ratio is not None:
            assert row["ratio"] == pytest.approx(ratio)
    text = encryption_markdown(section)
    assert "Scheme CKKS, polynomial modulus degree 8192 (4096 slots per ciphertext), scale 2^40" in text
    assert f"in clear: {', '.join(sorted(clear)) or 'none'}" in text
    assert "aggregate metrics (losses, accuracy, AUC" in text  # what still travels in clear is stated
    assert ("fed_stats" in text) == (C.TASK_FED_STATS in tasks)
    assert ("feature profiles of the alignment step" in text) == (C.TASK_EHR_PROFILE in tasks)
    if C.TASK_EHR_PROFILE in tasks:
        assert "counts below the job's min_cell suppressed" in text
        assert "every site's present and missing counts" in text  # the schema goes back to every site
    if clear:
        assert any("layers not encrypted" in line for line in section["in_clear"])


def test_clear_job_has_no_section() -> None:
    record = {"job_id": "j", "rounds": [{"round": 0, "sites": {"a": {"round": 0, C.M_N_TEST: 5}}}]}
    assert encryption_section(record) is None
    assert encryption_markdown(None) == ""
    report = build_report("heart_fedavg", record, {})
    assert report["encryption"] is None and "## Encryption" not in to_markdown(report)


def test_report_includes_the_section() -> None:
    report = build_report("heart_he", _record([], {"a": [1_000_000]}), {})
    assert report["encryption"]["sites"]["a"]["rounds"] == 1
    assert "## Encryption (homomorphic, site updates)" in to_markdown(report)
