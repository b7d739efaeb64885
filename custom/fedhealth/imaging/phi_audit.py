"""PHI audit: which identifying DICOM attributes a site's files carry, by tag name and count only.

The audit never reads out a value: it records that, say, ``PatientName`` is filled in 120 of 400
files. A site that sets ``require_deidentified`` (its own ``local/fedhealth_site.json``, on by
default) refuses to train on files that still carry any of them. The list follows the attributes
of the DICOM Basic Application Level Confidentiality Profile (PS3.15 Annex E, Table E.1-1) that
identify a patient, a clinician or an institution directly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pydicom.dataset import Dataset

from fedhealth.data.messages import SiteDataError

PHI_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "PhysiciansOfRecord",
    "StationName",
    "DeviceSerialNumber",
)


class PhiError(SiteDataError):
    """The site requires de-identified data and some files still carry identifying attributes."""


def identifying_tags(ds: Dataset) -> list[str]:
    """Names of the PHI attributes that are present with a non-empty value (the value is not read out)."""
    found = []
    for name in PHI_TAGS:
        elem = ds.get(name)
        if elem is not None and not _empty(elem):
            found.append(name)
    return found


def _empty(value: object) -> bool:
    text = str(value).strip().strip("^").strip()
    return text == "" or text in ("[]", "None")


def phi_summary(tag_lists: Iterable[list[str]]) -> dict:
    """``{"n_files", "n_identified", "tags": {tag name: count}}`` over the files of a site."""
    counts: Counter[str] = Counter()
    n_files = n_identified = 0
    for tags in tag_lists:
        n_files += 1
        n_identified += bool(tags)
        counts.update(tags)
    return {"n_files": n_files, "n_identified": n_identified, "tags": dict(sorted(counts.items()))}


def require_deidentified(summary: dict) -> None:
    """Refuse identified data: raises :class:`PhiError` naming the tags and counts, never values."""
    if summary["n_identified"]:
        tags = ", ".join(f"{name} ({count})" for name, count in summary["tags"].items())
        raise PhiError(
            f"{summary['n_identified']} of {summary['n_files']} DICOM files carry identifying attributes: "
            f"{tags}. This site requires de-identified data (setting 'require_deidentified'); "
            "de-identify the files (PS3.15 Annex E) or change the site's own setting."
        )
