"""Model persistors (FLARE components on the server)."""
