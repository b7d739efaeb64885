"""The chest X-ray site pipeline: DICOM decoding, quarantine, PHI audit, labels, cache, training.

Plain Python over pydicom and MONAI; nothing here imports FLARE (the executor in
``fedhealth.executors.cxr_executor`` is the thin FLARE layer on top).
"""
