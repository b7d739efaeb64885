"""Many simulated sites on one machine: FLARE's simulator with its clients in one process."""
