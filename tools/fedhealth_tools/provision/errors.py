"""The one error provisioning raises: a step failed, and the message says which and why.

Provisioning stands on its own: the POC federation uses it, never the other way round, so its error
is defined here rather than borrowed from ``fedhealth_tools.poc``.
"""

from __future__ import annotations


class ProvisionError(RuntimeError):
    """A provisioning step failed (bad project file, FLARE's provisioner, a kit to add or renew)."""
