"""fedhealth: federated learning for hospitals on NVIDIA FLARE.

This is the site runtime: what hospitals and the server install to run jobs. It has a FLARE-free
core (``data``, ``models``, ``training``, ``privacy``, ``compression``, ``imaging``, ``reports``)
and a thin FLARE layer (``executors``, ``filters``, ``aggregators``, ``workflows``, ``widgets``,
``shareables``) that converts FLARE messages and calls the core. It imports nothing from the
consortium's tools (``fedhealth_tools``: provisioning, POC, CLI, simulation, benchmarks), which are
a separate distribution not installed at hospitals.
"""

__version__ = "0.1.0"
