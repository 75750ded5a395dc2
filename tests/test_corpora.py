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
