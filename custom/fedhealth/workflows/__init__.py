"""Server-side workflows (controllers)."""
