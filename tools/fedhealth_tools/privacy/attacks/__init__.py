"""Attacks a compromised server can run on a site's update, and how to score them (privacy audit).

:mod:`.image_inversion` reconstructs a site's training images from the weights it sent (Inverting
Gradients, Geiping et al. 2020; DLG/iDLG, Zhu et al. 2019 and Zhao et al. 2020); :mod:`.image_scores`
scores reconstructions against the originals (SSIM, PSNR) and draws them. FLARE-free: the audit
captures the update through the site's own code and calls these on plain numpy state dicts.
"""
