"""Which privacy and compression filters a job may combine, and in what order.

The rules, checked on a job's filter lists before it runs (and by the filters themselves at run
time):

- DP before compression: sample-level DP-SGD happens in training, before any filter; a site's
  privacy-scope filters (noise, excluded layers) run before the job's own filters in FLARE
  (``nvflare.apis.utils.task_utils.get_filters``). Within a job's result filters the compressor
  must come last, so any noise filter listed in the job acts on real numbers, not on codes.
- No compression with homomorphic encryption: CKKS ciphertexts are already packed and can be
  neither quantized nor sparsified, and compressing before encryption would need a decoder inside
  the encrypted domain. Until such a combination is implemented, a job naming both is refused.
"""

from __future__ import annotations

COMPRESSOR = "fedhealth.filters.update_compressor.UpdateCompressor"
DECOMPRESSOR = "fedhealth.filters.update_decompressor.UpdateDecompressor"
HE_FILTERS = ("nvflare.app_opt.he.",)


class CompositionError(ValueError):
    """A job combines filters in a way the kit refuses."""


def _paths(filter_groups: list[dict]) -> list[list[str]]:
    return [[f.get("path", "") for f in group.get("filters", [])] for group in filter_groups or []]


def check_client_filters(config: dict) -> None:
    """Check a job's ``config_fed_client.json`` (as a dict) against the rules above.

    Raises:
        CompositionError: with the rule that is broken.
    """
    result_groups = _paths(config.get("task_result_filters", []))
    data_groups = _paths(config.get("task_data_filters", []))
    everything = [p for group in result_groups + data_groups for p in group]
    uses_he = any(p.startswith(HE_FILTERS) for p in everything)
    compresses = any(p in (COMPRESSOR, DECOMPRESSOR) for p in everything)
    if uses_he and compresses:
        raise CompositionError(
            "This job combines homomorphic encryption with update compression. CKKS ciphertexts can be "
            "neither quantized nor sparsified, and no encrypted-domain decoder is implemented: remove "
            "the UpdateCompressor/UpdateDecompressor filters or the HE filters."
        )
    for group in result_groups:
        if COMPRESSOR in group and group[-1] != COMPRESSOR:
            after = group[group.index(COMPRESSOR) + 1 :]
            raise CompositionError(
                f"UpdateCompressor must be the last task result filter, but {after} come after it: "
                "noise or exclusion filters must act on the numbers, not on the compressed codes."
            )
