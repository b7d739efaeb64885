"""A hospital's own table, by configuration: data dictionary, site mapping, alignment, encoding (FLARE-free)."""
