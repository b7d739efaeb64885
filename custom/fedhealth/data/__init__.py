"""Data pipelines (FLARE-free): the UCI Heart Disease source and site-side loading."""
