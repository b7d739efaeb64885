"""Onboarding a new site (cold start): judge the global model on the site's data, fine-tune if needed."""

from __future__ import annotations

from fedhealth.onboarding.artifacts import OnboardingError
from fedhealth.onboarding.validate_site import format_report, main, validate_site

__all__ = ["OnboardingError", "format_report", "main", "validate_site"]
