"""The shared dataset reader, including ShareGPT's truncated file."""

import json

from simspec.corpora import humaneval_problems, read_json_array, sharegpt_conversations


def test_read_json_array_keeps_complete_records_of_a_cut_file():
    records = [{"id": i, "text": "x" * i} for i in range(5)]
    full = json.dumps(records, indent=2)
    assert read_json_array(full) == records
    cut = full[: full.index('"id": 4') + 3]
    assert read_json_array(cut) == records[:4]
    assert read_json_array("[]") == []


def test_datasets_load():
    assert len(humaneval_problems()) == 164
    convs = sharegpt_conversations()
    assert len(convs) > 10_000
    assert all("conversations" in c for c in convs[:100])


def test_a_long_prompt_split_traces_only_its_span_and_keeps_the_rest_for_calibration(tmp_path):
    """--prompt-chars LO-HI: the first n prompts of that length, in the file's (or the seeded
    shuffle's) order; the others still calibrate; too few is one error naming --prompts."""
    import pytest

    from simspec.errors import InputError
    from simspec.trace.prompts import load_split

    rows = [{"prompt": "p" * n, "completion": "c"} for n in (5, 50, 500, 60, 70, 7)]
    f = tmp_path / "w.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = load_split(str(f), 3, prompt_chars=(50, 100))
    assert [len(p) for p in s.prompts] == [50, 60, 70]
    assert sorted(len(t) for t in s.calibration) == [5 + 2, 7 + 2, 500 + 2]
    assert "3 lines of 50..100 chars, up to line 5" in s.source
    assert load_split(str(f), 2).prompts == ["p" * 5, "p" * 50]  # no span: the first lines, as ever
    with pytest.raises(InputError, match="has 3 usable prompts of 50..100 characters, asked for 4"):
        load_split(str(f), 4, prompt_chars=(50, 100))
    with pytest.raises(InputError, match="HumanEval's prompts are fixed"):
        load_split("humaneval", 1, prompt_chars=(1, 2))
    long = load_split("sharegpt", 4, prompt_chars=(2000, 6000))
    assert all(2000 <= len(p) <= 6000 for p in long.prompts) and "2000..6000 chars" in long.source
    assert not any(t.startswith(p) for p in long.prompts for t in long.calibration)  # never traced and calibrated
