"""Server-side widgets."""
