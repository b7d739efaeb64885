"""Heart FedProx on the four hospitals (``jobs/heart_fedprox``) as Flower 1.42 apps.

Stable entry points (FLARE's Flower integration and the FAB ``fedhealth/flower/apps/heart`` name them):
``fedhealth.flower.heart:client_app`` and ``fedhealth.flower.heart:server_app``. The job's settings
(EHR alignment policy, model, seed, rounds, local epochs, batch size, optimizer, learning rate,
FedProx ``mu``, aggregation) are read from the job folder at run time; node config ``site-name`` and
``site-root``, and the run config keys ``job-dir``, ``num-rounds``, ``min-sites``, ``wait-s``,
``round-timeout``, ``results``, ``sites-file`` are those of :mod:`fedhealth.flower.apps_factory`.
"""

from __future__ import annotations

from fedhealth.flower.apps_factory import client_app_for, server_app_for

JOB = "heart_fedprox"
client_app = client_app_for(JOB)
server_app = server_app_for(JOB)
