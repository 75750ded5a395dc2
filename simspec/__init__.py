"""simspec: a discrete-event simulator and cost model for speculative LLM inference."""

__version__ = "0.1.0"
