"""The SimPy simulator: workload, devices, serving loop, acceptance oracles, metrics.

Never imports torch: it runs from profiles/ and traces/ files alone.
"""
