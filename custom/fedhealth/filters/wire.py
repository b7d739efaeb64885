"""The size of a message as FLARE puts it on the wire (FOBS serialization of the Shareable).

FLARE glue, so it lives in the FLARE layer: the compression core (``fedhealth.compression``) encodes
updates and imports no nvflare; the filters that meter a real message use this.
"""

from __future__ import annotations

from functools import cache

from nvflare.apis.shareable import Shareable
from nvflare.fuel.utils import fobs


@cache
def register_decomposers() -> None:
    """FLARE's own decomposers first, as every FLARE process registers them, then numpy's.

    FLARE serializes a ``Shareable`` with ``DictDecomposer(Shareable)`` (``flare_decomposers``). A
    ``Shareable`` serialized in this process before that registration is auto-registered as a plain
    data class instead (its items are lost), and FLARE's later registration does not replace it: an
    admin session opened afterwards in the same process then fails its login (the server's
    certificate is missing from the challenge reply).
    """
    from nvflare.apis.utils.decomposers import flare_decomposers
    from nvflare.app_common.decomposers import common_decomposers, numpy_decomposers

    flare_decomposers.register()
    common_decomposers.register()
    numpy_decomposers.register()


def serialized_size(shareable: Shareable) -> int:
    """Bytes of ``shareable`` serialized by FOBS, as FLARE sends it (headers and meta included)."""
    register_decomposers()
    return len(fobs.dumps(shareable))
