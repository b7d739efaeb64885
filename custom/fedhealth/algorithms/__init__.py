"""FLARE-free cores of the non-IID algorithms: SCAFFOLD, FedOpt, Ditto, clustered FL, partitioning."""
