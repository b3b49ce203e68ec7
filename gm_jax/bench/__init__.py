"""Benchmarks: sampler speed and quality per NFE (``samplers``), training throughput (``train``)."""
