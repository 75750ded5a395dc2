"""How simspec times anything on a machine it shares: one protocol (interleaved passes, the
fastest-state estimate, a noise figure per point, a split-half stop rule). Torch-free: the
thing timed is a callable, the clock is injectable (tests drive it with fake clocks)."""
