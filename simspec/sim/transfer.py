"""What crosses devices in a speculative round, and what it costs on the link between them.

Draft and target on two devices exchange two messages per round: the draft (token ids, one
per tree node) to the target, and the verdict (accepted ids plus the bonus token) back. A
drafter that reads the target's hidden states (an EAGLE-like kind: `Kind.crosses = "hidden"`)
also receives one hidden vector per accepted token. Each message costs the link's latency plus
its bytes over its bandwidth; the link between two devices is the slower of their two.
"""

from __future__ import annotations

from dataclasses import dataclass

TOKEN_BYTES = 4  # an int32 token id


@dataclass(frozen=True)
class Link:
    bandwidth: float          # bytes/s, one direction
    latency_s: float          # per message
    hidden_bytes: float = 0.0  # per token sent back to the drafter (0: token ids only)

    @classmethod
    def between(cls, a, b, hidden_bytes: float = 0.0) -> "Link":
        """The link between two simspec.devices DeviceInfo: the slower side decides."""
        return cls(min(a.link_bw, b.link_bw), max(a.link_latency_s, b.link_latency_s), hidden_bytes)

    def message_s(self, nbytes: float) -> float:
        return self.latency_s + nbytes / self.bandwidth

    def round_s(self, batch: int, draft_tokens: int, verified_tokens: int) -> float:
        """One round for `batch` sequences: the draft there, the verdict (and hidden states) back."""
        there = batch * draft_tokens * TOKEN_BYTES
        back = batch * verified_tokens * (TOKEN_BYTES + self.hidden_bytes)
        return self.message_s(there) + self.message_s(back)
