"""The device catalog (`catalog.toml`): named devices with their datasheet figures.

A scenario device names a catalog entry (`catalog = "h100-sxm"`), defines one inline
(`flops`, `memory_gb_s`, ...), or both (inline keys override the entry's). Each figure's
source lives beside it in the file, so a user can see what an estimate rests on.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).with_name("catalog.toml")
KERNELS = ("gemv", "gemm", "attention", "head")  # kernel classes with their own efficiency
DTYPES = ("bf16", "fp16", "fp8", "fp32")


@dataclass(frozen=True)
class Efficiency:
    """Fraction of peak a kernel class reaches: `bw` of memory bandwidth, `flops` of FLOP/s."""

    bw: float = 0.8
    flops: float = 0.6


@dataclass(frozen=True)
class DeviceInfo:
    """What the roofline needs of a device (SI units: FLOP/s, bytes/s, seconds)."""

    name: str
    title: str
    kind: str                         # gpu | cpu | soc
    flops: dict[str, float]           # dtype -> peak dense FLOP/s
    memory_bw: float                  # bytes/s
    memory_bytes: float
    link_bw: float                    # bytes/s one direction, to another device
    link_latency_s: float
    price_per_hour: float
    efficiency: dict[str, Efficiency] = field(default_factory=dict)
    overhead_s: float = 0.0           # per forward (launches, framework)
    layer_overhead_s: float = 0.0     # per decoder layer (small ops, dispatch)
    gemm_row_block: int = 1           # rows a GEMM computes at a time (AMX: 16)
    sharpness: float = 8.0            # p of (t_mem^p + t_flops^p)^(1/p): large = max(), 1 = sum
    sources: dict[str, str] = field(default_factory=dict)

    def peak(self, dtype: str) -> float:
        if dtype not in self.flops:
            raise KeyError(f"{self.name} has no {dtype} FLOP/s (has {', '.join(self.flops)})")
        return self.flops[dtype]

    def eff(self, kernel: str) -> Efficiency:
        return self.efficiency.get(kernel, Efficiency())

    def with_efficiency(self, eff: dict[str, Efficiency], overhead_s: float | None = None,
                        layer_overhead_s: float | None = None, sharpness: float | None = None) -> "DeviceInfo":
        return replace(self, efficiency={**self.efficiency, **eff},
                       sharpness=self.sharpness if sharpness is None else sharpness,
                       overhead_s=self.overhead_s if overhead_s is None else overhead_s,
                       layer_overhead_s=self.layer_overhead_s if layer_overhead_s is None else layer_overhead_s)


# The keys a catalog entry (and an inline scenario device) may set; anything else is an error.
ENTRY_KEYS = {"title", "kind", "flops", "memory_gb_s", "memory_gb", "link_gb_s", "link_latency_us",
              "price_per_hour", "efficiency", "overhead_us", "layer_overhead_us", "gemm_row_block",
              "sharpness", "sources"}


def _check_entry(name: str, d: dict[str, Any], where: str) -> None:
    bad = sorted(set(d) - ENTRY_KEYS)
    if bad:
        raise ValueError(f"{where}: [{name}] unknown key {bad[0]!r}")
    for k in ("flops", "memory_gb_s"):
        if k not in d:
            raise ValueError(f"{where}: [{name}] needs `{k}`")
    for dt in d["flops"]:
        if dt not in DTYPES:
            raise ValueError(f"{where}: [{name}] flops.{dt}: not one of {', '.join(DTYPES)}")
    for kern, e in (d.get("efficiency") or {}).items():
        if kern not in KERNELS:
            raise ValueError(f"{where}: [{name}] efficiency.{kern}: not one of {', '.join(KERNELS)}")
        if set(e) - {"bw", "flops"}:
            raise ValueError(f"{where}: [{name}] efficiency.{kern}: only `bw` and `flops`")


def info_from_mapping(name: str, d: dict[str, Any]) -> DeviceInfo:
    """A DeviceInfo from a catalog-style mapping (units as in catalog.toml)."""
    eff = {k: Efficiency(**v) for k, v in (d.get("efficiency") or {}).items()}
    return DeviceInfo(
        name=name, title=str(d.get("title", name)), kind=str(d.get("kind", "gpu")),
        flops={k: float(v) for k, v in d["flops"].items()},
        memory_bw=float(d["memory_gb_s"]) * 1e9, memory_bytes=float(d.get("memory_gb", 0.0)) * 1e9,
        link_bw=float(d.get("link_gb_s", 32.0)) * 1e9,
        link_latency_s=float(d.get("link_latency_us", 10.0)) * 1e-6,
        price_per_hour=float(d.get("price_per_hour", 0.0)), efficiency=eff,
        overhead_s=float(d.get("overhead_us", 0.0)) * 1e-6,
        layer_overhead_s=float(d.get("layer_overhead_us", 0.0)) * 1e-6,
        gemm_row_block=int(d.get("gemm_row_block", 1)), sharpness=float(d.get("sharpness", 8.0)),
        sources=dict(d.get("sources") or {}),
    )


@lru_cache(maxsize=4)
def _raw(path: str) -> dict[str, dict[str, Any]]:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    for name, d in data.items():
        _check_entry(name, d, path)
    return data


def raw_entries(path: Path = CATALOG_FILE) -> dict[str, dict[str, Any]]:
    """Every catalog entry as written (units of the file)."""
    return _raw(str(path))


def names(path: Path = CATALOG_FILE) -> list[str]:
    return list(raw_entries(path))


def get(name: str, path: Path = CATALOG_FILE) -> DeviceInfo:
    """A catalog device by name; KeyError naming the known ones."""
    entries = raw_entries(path)
    if name not in entries:
        raise KeyError(f"unknown catalog device {name!r} (catalog: {', '.join(entries)})")
    return info_from_mapping(name, entries[name])
