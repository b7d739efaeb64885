"""Heart FedProx on the four hospitals (``jobs/heart_fedprox``) as Flower 1.42 apps.

Stable entry points (FLARE's Flower integration and the FAB folder ``fedhealth/flower/apps/heart``
name them): ``fedhealth.flower.heart:client_app`` and ``fedhealth.flower.heart:server_app``.

Every setting is read from the job folder at run time: the EHR alignment policy, the model
(``TabularNet``, width from the aligned schema, seeded), seed, rounds, local epochs, batch size,
optimizer, learning-rate schedule, FedProx ``mu`` and the aggregation rule. The sites first answer
a query round (``query.ehr_profile``, ``query.set_schema``), then train, then validate the final
model (``evaluate``).

Node config (each SuperNode's own): ``site-name``; ``site-root``, the site's folder whose
``local/fedhealth_site.json`` names its ``data_root`` (the hospital's table ``heart_disease/``
with its ``mapping.json``).

Run config (stable keys, all optional): ``job-dir`` (default: the kit's ``jobs/heart_fedprox``),
``num-rounds`` (0: the job's), ``min-sites`` (0: the job's ``min_clients``), ``wait-s`` (120),
``round-timeout`` (600), ``results`` (path of the results JSON; empty: none), ``sites-file``
(simulation only). Details in :mod:`fedhealth.flower.apps_factory`.
"""

from __future__ import annotations

from fedhealth.flower.apps_factory import client_app_for, server_app_for

JOB = "heart_fedprox"
client_app = client_app_for(JOB)
server_app = server_app_for(JOB)
