"""Peers that benchmarks run side by side with kumo (installed and started by the benchmark itself)."""
