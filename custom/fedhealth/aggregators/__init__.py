"""Server-side aggregators."""
