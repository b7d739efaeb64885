"""fedhealth tools: provisioning, POC, simulation and benchmarks (not installed at hospitals)."""
