"""Live speculative decoding on real (or tiny) models: the engine behind `simspec run`.

    draft_spec.py  the --draft argument (none | model:NAME | early_exit:L | ngram[:N]), torch-free
    tree.py      static token trees (a chain is a tree with one child per depth)
    kv.py        a batched KV cache with ragged rows: masks, positions, commit / rollback
    drafters.py  separate draft model, early exit (shares the target's cache), trimmed head, n-gram
    sampling.py  acceptance: greedy tree walk, rejection sampling
    engine.py    generate(): prefill, then draft -> verify -> accept -> commit; plain_greedy()
    stats.py     time per phase, tokens per round
    prompts.py   prompts of a dataset (HumanEval, ShareGPT, a JSONL file)
"""
