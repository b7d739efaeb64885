"""The kit's federations in other frameworks, measured side by side (``make bench-peers``).

:mod:`~fedhealth_tools.peers.sites` writes the sites' folders (the four heart hospitals, their 100
synthetic shards, the four DICOM sites); :mod:`~fedhealth_tools.peers.flower_sim` and
:mod:`~fedhealth_tools.peers.flower_deploy` run the Flower apps (:mod:`fedhealth.flower`) in Flower's
simulation and deployment engines (``.venv-flower``); :mod:`~fedhealth_tools.peers.kit_sim` runs the
same job with the kit's in-process FLARE simulator on the same folders (``.venv``);
:mod:`~fedhealth_tools.peers.kit_runs` runs the shipped jobs in the kit's POC federation, and
:mod:`~fedhealth_tools.peers.meters` measures both sides' memory and bytes the same way, from outside.
"""
