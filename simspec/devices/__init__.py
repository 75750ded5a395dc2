"""Devices as more than names: a catalog of datasheet figures, model dimensions, and the
roofline cost model that prices a forward pass from both (torch-free, like `sim/`)."""
