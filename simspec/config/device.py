"""A device of a scenario's [placement]: a catalog entry (simspec/devices/catalog.toml)
merged with the figures given inline, which override it key by key."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from simspec.config.fields import Dtype, NonNeg, Positive, Strict

Kernel = Literal["gemv", "gemm", "attention", "head"]


class EfficiencySpec(Strict):
    bw: Annotated[float, Field(gt=0)] = 0.8
    flops: Annotated[float, Field(gt=0)] = 0.6


class DeviceSpec(Strict):
    """A place forward passes run. A bare name (today's default) only carries busy time and
    price; `catalog` (simspec/devices/catalog.toml) or inline figures make it a device the
    roofline can price, and set the link transfers between devices cross."""

    memory_gb: NonNeg | None = None
    price_per_hour: NonNeg = 0.0       # default: the catalog entry's price, else 0
    catalog: str | None = None
    flops: dict[Dtype, Positive] | None = None      # peak dense FLOP/s per dtype
    memory_gb_s: Positive | None = None
    link_gb_s: Positive | None = None
    link_latency_us: NonNeg | None = None
    overhead_us: NonNeg | None = None
    layer_overhead_us: NonNeg | None = None
    sharpness: Annotated[float, Field(ge=1)] | None = None
    efficiency: dict[Kernel, EfficiencySpec] | None = None
    fit: str | None = None             # a profile measured on this device: fit efficiencies to it

    @field_validator("catalog")
    @classmethod
    def _known_device(cls, v: str | None) -> str | None:
        if v is not None:
            from simspec.devices import catalog

            if v not in catalog.names():
                raise ValueError(f"unknown catalog device {v!r} (catalog: {', '.join(catalog.names())})")
        return v

    @model_validator(mode="after")
    def _figures(self) -> "DeviceSpec":
        inline = [k for k in ("flops", "memory_gb_s", "link_gb_s", "link_latency_us", "overhead_us",
                              "layer_overhead_us", "sharpness", "efficiency", "fit") if getattr(self, k) is not None]
        if inline and self.catalog is None and (self.flops is None or self.memory_gb_s is None):
            raise ValueError(f"an inline device (`{inline[0]}` without `catalog`) needs `flops` and `memory_gb_s`")
        return self

    @property
    def priced(self) -> bool:
        """Has figures the roofline can price (a catalog entry or inline ones)."""
        return self.catalog is not None or self.flops is not None

    @property
    def price(self) -> float:
        """Per hour: as given, else the catalog entry's, else 0."""
        if "price_per_hour" in self.model_fields_set or self.catalog is None:
            return self.price_per_hour
        from simspec.devices import catalog

        return catalog.get(self.catalog).price_per_hour

    def info(self, name: str):
        """The catalog entry overridden by the inline figures (a simspec.devices DeviceInfo);
        None for a bare name."""
        if not self.priced:
            return None
        from simspec.devices import catalog

        d = dict(catalog.raw_entries()[self.catalog]) if self.catalog else {"title": name}
        for k in ("flops", "memory_gb_s", "link_gb_s", "link_latency_us", "overhead_us",
                  "layer_overhead_us", "sharpness"):
            v = getattr(self, k)
            if v is not None:
                d[k] = dict(v) if isinstance(v, dict) else v
        if self.efficiency is not None:
            d["efficiency"] = {**(d.get("efficiency") or {}),
                               **{k: e.model_dump() for k, e in self.efficiency.items()}}
        if self.memory_gb is not None:
            d["memory_gb"] = self.memory_gb
        if "price_per_hour" in self.model_fields_set:
            d["price_per_hour"] = self.price_per_hour
        return catalog.info_from_mapping(self.catalog or name, d)
