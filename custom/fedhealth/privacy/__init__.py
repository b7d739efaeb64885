"""Differential privacy, FLARE-free: DP-SGD at each site (Opacus), its ledger and budget, DP-FedAvg."""
