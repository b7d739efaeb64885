"""Side-by-side runs of the kit's federations and the same work in Flower 1.42 (``make bench-peers``)."""
