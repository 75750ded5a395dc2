"""Devices: named places where forward passes run, with their busy time.

Each replica owns its devices and runs one serving loop, so a device is never contended
by two processes: the loop advances the clock by one timeout per iteration and charges
each device the time it was busy inside it. That keeps the event count per iteration at
one, which is what lets a study afford hundreds of simulations.
"""

from __future__ import annotations

from dataclasses import dataclass

from simspec.config.device import DeviceSpec


@dataclass
class Device:
    name: str
    spec: DeviceSpec
    replica: int = 0
    busy_s: float = 0.0

    def charge(self, seconds: float) -> None:
        self.busy_s += seconds
