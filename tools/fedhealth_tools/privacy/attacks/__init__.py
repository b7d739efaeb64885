"""Attacks a compromised server can run on a site's update or final model, and how to score them.

:mod:`.tabular_inversion` reads a patient's record from a logistic-regression update (``ΔW / Δb``,
Phong et al. 2018) and scores how much of a training row it recovers; :mod:`.membership` tells
training rows from held-out rows by their loss (Yeom et al. 2018) or by LiRA (Carlini et al. 2022).
FLARE-free: the audit captures the update through the site's own code and calls these on plain numpy
state dicts and torch models.
"""
