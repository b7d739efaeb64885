"""One throw-away PKI for all the SecAgg+ tests (RSA key generation is the slow part), and federations."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from secagg_rounds import SITES

from fedhealth.secagg.config import SecAggConfig
from fedhealth.secagg.identity import Identity
from fedhealth_tools.secagg import simulate
from fedhealth_tools.secagg.pki import make_pki
from fedhealth_tools.secagg.simulate import InProcessSecAgg

Pki = tuple[bytes, dict[str, Identity]]


@pytest.fixture(scope="session")
def pki() -> Pki:
    """A root CA and the 16 sites' identities under it."""
    return make_pki(SITES)


@pytest.fixture(scope="session")
def other_pki() -> Pki:
    """Another project's root CA, with certificates for the same first two site names."""
    return make_pki(SITES[:2], root_name="another-project-root")


@pytest.fixture
def federation(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Callable[..., InProcessSecAgg]:
    """``federation(sites, config, job=...)``: an :class:`InProcessSecAgg` on the session's PKI."""
    monkeypatch.setattr(simulate, "make_pki", lambda names: pki)

    def make(sites: list[str], config: SecAggConfig, *, job: str = "job-a") -> InProcessSecAgg:
        return InProcessSecAgg(list(sites), config, job=job)

    return make
