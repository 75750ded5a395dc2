"""Predicted vs measured: the figures that tell a user whether to trust simspec.

Torch-free: it compares numbers; the live engine (simspec.live) produces the measured ones.
"""
