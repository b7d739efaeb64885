"""FLARE executors: the site side of each job (thin wrappers over the FLARE-free core)."""
