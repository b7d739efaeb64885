"""SecAgg+ outside FLARE: a test PKI and the in-process runner of many sites (benchmarks, tests)."""
