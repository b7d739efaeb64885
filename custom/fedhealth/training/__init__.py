"""Training and evaluation loops, metrics and aggregation (FLARE-free)."""
