"""Attacks a compromised server can run on what fedhealth sites send (issue 20), FLARE-free.

- :mod:`.image_inversion` (with :mod:`.local_steps`): Inverting Gradients (Geiping et al. 2020) and
  DLG/iDLG (Zhu et al. 2019; Zhao et al. 2020) on an image site's update;
- :mod:`.image_scores`: SSIM and PSNR of reconstructions against the originals, matched one to one;
- :mod:`.tabular_inversion`: the exact row recovery ``x = ΔW / Δb`` of a first linear layer;
- :mod:`.membership`: loss-threshold (Yeom et al. 2018) and LiRA (Carlini et al. 2022) membership inference.

:mod:`fedhealth_tools.privacy.audit` captures what a site sends and runs these on it.
"""
