"""Run reports: per-site tables, JSON, Markdown and plots (FLARE-free)."""
