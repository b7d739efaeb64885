"""The shipped FLARE job folders, generated from one spec per family (``jobs/specs/``)."""
