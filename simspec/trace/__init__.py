"""Acceptance traces: what each candidate drafter would have had accepted on real generations.

`capture` (torch) records, for every generated position of a greedy target decode, the rank of
the target's token under each drafter and the sampling acceptance beta; `schema` reads and
checks the Parquet + JSON sidecar; `oracle` replays them inside the simulator (numpy only).
"""
