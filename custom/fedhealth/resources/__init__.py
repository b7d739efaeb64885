"""Site-side FLARE resource managers (``local/resources.json`` components), a FLARE layer."""
