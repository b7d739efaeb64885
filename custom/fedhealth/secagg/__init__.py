"""SecAgg+ secure aggregation, FLARE-free: the server learns only the sum of the sites' updates."""
