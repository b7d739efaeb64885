"""fedhealth: federated learning for hospitals on NVIDIA FLARE.

The package has a FLARE-free core (``data``, ``models``, ``training``, ``reports``) and a thin
FLARE layer (``executors``, ``workflows``, ``widgets``, ``shareables``, ``provision``, ``poc``)
that converts FLARE messages and calls the core.
"""

__version__ = "0.1.0"
