"""Server-side shareable generators."""
