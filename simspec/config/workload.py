"""A scenario's [workload]: how many requests, when they arrive, and their prompt and output
lengths (fixed, drawn from a distribution, or a dataset's)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from simspec.config.fields import PosInt, Strict, TokenLen

class _Bounded(Strict):
    @model_validator(mode="after")
    def _order(self):
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class UniformLen(_Bounded):
    dist: Literal["uniform"]
    min: TokenLen
    max: TokenLen


class LogNormalLen(_Bounded):
    dist: Literal["lognormal"]
    median: Annotated[float, Field(gt=0, le=10_000_000)]
    sigma: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
    min: TokenLen = 1
    max: TokenLen = 1_000_000


LengthSpec = Union[TokenLen, Annotated[Union[UniformLen, LogNormalLen], Field(discriminator="dist")]]


def check_arrival(arrival: str | None, rate: float | None, concurrency: int | None) -> None:
    """The arrival keys that go together (a scenario's workload, a serving validation config)."""
    if arrival == "poisson" and rate is None:
        raise ValueError("arrival = 'poisson' needs `rate` (requests per second)")
    if arrival != "poisson" and rate is not None:
        raise ValueError("`rate` only applies to arrival = 'poisson'")
    if arrival != "closed" and concurrency is not None:
        raise ValueError("`concurrency` only applies to arrival = 'closed'")


class WorkloadSpec(Strict):
    requests: PosInt = 1
    arrival: Literal["closed", "poisson", "burst", "explicit"] = "closed"
    concurrency: PosInt | None = None
    rate: Annotated[float, Field(gt=0)] | None = None
    # arrival = "explicit": request i arrives at arrival_times[i] seconds (one per request,
    # non-decreasing): what `simspec validate` gives the simulator to replay a live run's arrivals
    arrival_times: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = None
    prompt_len: LengthSpec | None = None
    output_len: LengthSpec | None = None
    dataset: Literal["sharegpt", "humaneval", "trace"] | None = None  # trace: lengths of the replayed sequences
    max_output_len: TokenLen | None = None

    @model_validator(mode="after")
    def _check(self) -> "WorkloadSpec":
        check_arrival(self.arrival, self.rate, self.concurrency)
        if self.arrival == "explicit":
            if self.arrival_times is None:
                raise ValueError("arrival = 'explicit' needs `arrival_times` (seconds, one per request)")
            if len(self.arrival_times) != self.requests:
                raise ValueError(f"`arrival_times` has {len(self.arrival_times)} times for {self.requests} requests")
            if any(b < a for a, b in zip(self.arrival_times, self.arrival_times[1:])):
                raise ValueError("`arrival_times` must be non-decreasing")
        elif self.arrival_times is not None:
            raise ValueError("`arrival_times` only applies to arrival = 'explicit'")
        if self.dataset is None and (self.prompt_len is None or self.output_len is None):
            raise ValueError("give `prompt_len` and `output_len`, or a `dataset`")
        return self
