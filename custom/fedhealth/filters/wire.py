"""The size of a message as FLARE puts it on the wire (FOBS serialization of the Shareable).

FLARE glue, so it lives in the FLARE layer: the compression core (``fedhealth.compression``) encodes
updates and imports no nvflare; the filters that meter a real message use this.
"""

from __future__ import annotations

from functools import cache

from nvflare.apis.shareable import Shareable
from nvflare.fuel.utils import fobs


@cache
def _register_decomposers() -> None:
    from nvflare.app_common.decomposers import common_decomposers, numpy_decomposers

    common_decomposers.register()
    numpy_decomposers.register()


def serialized_size(shareable: Shareable) -> int:
    """Bytes of ``shareable`` serialized by FOBS, as FLARE sends it (headers and meta included)."""
    _register_decomposers()
    return len(fobs.dumps(shareable))
