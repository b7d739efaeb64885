"""The chest X-ray site pipeline: DICOM decoding, quarantine, PHI audit, labels, cache, training.

Plain Python over pydicom and MONAI; nothing here imports FLARE (the executor in
``fedhealth.tasks.imaging`` is the task plug-in on top).
"""
