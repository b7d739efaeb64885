"""Flower apps that run under FLARE with the kit's site checks (FLARE-free; ``heart`` needs ``flwr``)."""
