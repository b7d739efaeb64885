"""``fedhealth privacy-audit``: what a compromised server learns from what a fedhealth site sends.

:mod:`.job` reads a job folder's settings, :mod:`.capture` runs the site's own code path
(:class:`fedhealth.client.runner.SiteRunner` with the job's task, algorithms and local settings) on
patients whose records are known and returns what the site would send, under each protection;
:mod:`.run` attacks it with :mod:`fedhealth_tools.privacy.attacks` and writes the figures.
"""
