"""The shipped FLARE job folders, generated from one spec per family (``job_specs/``)."""
