"""The kit's federations as Flower 1.42 apps (``flwr``), for side-by-side measurements and Flower users.

Only :mod:`fedhealth.flower.apps_factory`, :mod:`fedhealth.flower.heart` and :mod:`fedhealth.flower.cxr`
import ``flwr``; they run in the Flower environment (``.venv-flower``). :mod:`fedhealth.flower.job`,
:mod:`fedhealth.flower.site` and :mod:`fedhealth.flower.wire` are plain Python over the kit's
FLARE-free core (the same :class:`~fedhealth.client.runner.SiteRunner` the FLARE executor drives), so
the kit's tests check them without Flower. No other kit module imports this package
(``tests/unit/layout/test_layers.py``).
"""
