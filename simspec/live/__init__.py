"""Live speculative decoding on real (or tiny) models: the engine behind `simspec run`.

    tree.py      the round's TreeShape (simspec.tree_shape) with torch masks
    run.py       `simspec run`: load models and prompts, decode, report
    kv.py        a batched KV cache with ragged rows: masks, positions, commit / rollback
    drafters.py  separate draft model, early exit (shares the target's cache), trimmed head, n-gram;
                 one factory per kind of simspec.drafters (the --draft spec string lives there)
    sampling.py  acceptance: greedy tree walk, rejection sampling
    synthetic.py forced acceptance (vLLM's rejection_sample_method = "synthetic"): a seeded
                 per-position model or the simulator's trace oracle decides each round's count
    engine.py    generate(): prefill, then draft -> verify -> accept -> commit; plain_greedy()
    serving.py   serve(): continuous batching (arrivals, admission, prefill-first, retirement)
                 over the engine's rounds, with the simulator's ServingPolicy; summarize()
    forwards.py  the real forwards the serving loop calls (prefill, round, keep rows)
    clocks.py    wall clock, fake clock
    stats.py     time per phase, tokens per round
    prompts.py   prompts of a dataset (HumanEval, ShareGPT, a JSONL file)
"""
