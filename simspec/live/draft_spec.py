"""The `--draft` spec string lives with the drafter kinds (`simspec.drafters.DraftSpec`)."""

from simspec.drafters import DraftSpec

__all__ = ["DraftSpec"]
