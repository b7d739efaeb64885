"""FLARE filters applied to what a site sends or receives."""
