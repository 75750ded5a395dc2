"""A repetitive workload: HumanEval with a second "fix your answer" turn (`--dataset humaneval-fix`).

Turn 1 is the HumanEval prompt (as `--dataset humaneval` asks it); the target answers it
greedily (`max_new_tokens`, the capture's own budget); turn 2 asks it to check that answer and
write the final version. The traced prompt is the whole conversation, so the traced output
mostly repeats code that is already in its context: the self-refinement loop SuffixDecoding
and prompt lookup are built for (Oliaro et al. name it among their agentic workloads).
"""

from __future__ import annotations

from simspec.errors import InputError

DATASET = "humaneval-fix"
FIX_TURN = "Check your solution and write the final version."


def conversation(tokenizer, question: str, answer: str) -> list[int]:
    """Token ids of user question, assistant answer, user fix request, then the assistant's turn."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(None, "--dataset", f"{DATASET} is a conversation: the target needs a chat template")
    msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": answer},
            {"role": "user", "content": FIX_TURN}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_text(tokenizer, tokens: list[int], stops: set[int]) -> str:
    """The first turn's reply as text (its stop token dropped)."""
    return tokenizer.decode([t for t in tokens if t not in stops], skip_special_tokens=True)
