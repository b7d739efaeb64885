"""Client algorithms as plug-ins around one local round, FLARE-free (FL4Health's client hooks, kept small).

:mod:`fedhealth.client.base` declares the hooks and the registry, :mod:`fedhealth.client.runner` runs a
round of any task (:mod:`fedhealth.tasks`) with any composable list of algorithms. The FLARE executor
and the tools' in-process loop both call the runner, so they cannot drift.
"""
