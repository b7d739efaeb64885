"""A hospital's own table by configuration: dictionary, site mapping, alignment, encoding (FLARE-free)."""
