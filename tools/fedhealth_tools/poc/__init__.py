"""Running the kit on one machine in FLARE POC mode: workspace, processes, admin session."""
