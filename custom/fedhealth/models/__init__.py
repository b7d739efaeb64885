"""Models (FLARE-free)."""
