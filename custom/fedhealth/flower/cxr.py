"""Chest X-ray FedAvg on the four DICOM sites (``jobs/cxr_fedavg``) as Flower 1.42 apps.

Entry points: ``fedhealth.flower.cxr:client_app`` and ``fedhealth.flower.cxr:server_app`` (FAB folder
``fedhealth/flower/apps/cxr``). Settings from the job folder; node and run config as in
:mod:`fedhealth.flower.apps_factory`.
"""

from __future__ import annotations

from fedhealth.flower.apps_factory import client_app_for, server_app_for

JOB = "cxr_fedavg"
client_app = client_app_for(JOB)
server_app = server_app_for(JOB)
