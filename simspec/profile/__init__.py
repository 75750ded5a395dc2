"""Profiling real models on a device and the measured cost model built from it."""
