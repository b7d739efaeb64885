"""Flower 1.42 apps over the kit's FLARE-free core, and what lets FLARE run a Flower app safely.

Two kinds of app, both installed at every site (a FAB carries only a ``pyproject.toml`` naming them):

* :mod:`fedhealth.flower.heart` and :mod:`fedhealth.flower.cxr` (built by
  :mod:`fedhealth.flower.apps_factory`): the kit's own jobs ``heart_fedprox`` and ``cxr_fedavg`` as
  Flower apps, every setting read from the job folder, for the side-by-side measurements
  (``make bench-peers``, :doc:`flower-apps`); :mod:`~fedhealth.flower.job`, :mod:`~fedhealth.flower.site`
  and :mod:`~fedhealth.flower.wire` are their plain-Python parts.
* :mod:`fedhealth.flower.heart_flower`: a self-contained heart FedProx app in the shape of a research
  group's Flower code (settings in its run config), which FLARE runs as the job ``heart_flower``; it
  writes the kit's run files (:mod:`~fedhealth.flower.run_files`) so the kit's per-site report reads it.

The site-side checks of FLARE's Flower integration: :mod:`~fedhealth.flower.fab_policy` (which apps a
site runs) and :mod:`~fedhealth.flower.fleet_bridge` (FLARE 2.9's relay to a Flower 1.42 SuperNode).
Modules that import ``flwr`` run only in the Flower environment (``.venv-flower``); no FLARE-layer
module of the kit imports them (``tests/unit/layout``).
"""
