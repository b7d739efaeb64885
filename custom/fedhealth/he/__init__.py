"""Homomorphic encryption (TenSEAL CKKS): context checks and measurements, FLARE-free."""
