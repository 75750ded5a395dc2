"""Scenario.with_: the typed way to derive a scenario (a study's trial, a capacity probe, a
validation config). A change is validated like a file: errors name the file, key and reason."""

from __future__ import annotations

import pytest

from simspec.config import parse_scenario
from simspec.config.scenario import AcceptanceSpec, DraftSpec
from simspec.errors import InputError

BASE = {
    "target": {"name": "t", "cost": {"step_ms": 20.0, "per_seq_ms": 0.5}, "layers": 24},
    "draft": {"kind": "model", "cost": {"step_ms": 4.0}},
    "acceptance": {"iid": 0.7},
    "speculation": {"draft_len": 3},
    "placement": {"devices": {"gpu": {"catalog": "h100-sxm"}, "cpu": {"price_per_hour": 0.1}}, "target": "gpu"},
    "workload": {"requests": 8, "arrival": "closed", "concurrency": 4, "prompt_len": 32, "output_len": 16},
}


@pytest.fixture
def sc():
    return parse_scenario(BASE, "base.toml")


def test_a_mapping_patches_a_section_key_by_key(sc):
    new = sc.with_(target={"cost": {"step_ms": 30.0}}, serving={"max_batch": 8}, file="f")
    assert new.target.cost.step_ms == 30.0 and new.target.cost.per_seq_ms == 0.5  # nested tables merge
    assert new.target.layers == 24 and new.serving.max_batch == 8
    assert sc.serving.max_batch == 1  # the original is unchanged


def test_none_removes_a_key_and_a_model_replaces_a_section(sc):
    new = sc.with_(workload={"arrival": "poisson", "rate": 2.0, "concurrency": None}, file="f")
    assert (new.workload.arrival, new.workload.rate, new.workload.concurrency) == ("poisson", 2.0, None)
    new = sc.with_(acceptance=AcceptanceSpec(per_position=[0.9, 0.5]), file="f")
    assert new.acceptance.iid is None and new.acceptance.per_position == [0.9, 0.5]
    assert sc.with_(speculation=None, file="f").gamma == 0  # None: the section's default


def test_equal_to_the_file_it_stands_for(sc):
    new = sc.with_({"draft": None}, {"draft": {"kind": "ngram"}}, speculation={"draft_len": 5}, file="f")
    want = {**BASE, "draft": {"kind": "ngram"}, "speculation": {"draft_len": 5}}
    assert new == parse_scenario(want, "f")
    assert new.draft == DraftSpec(kind="ngram")  # cleared, then given: no cost left from the model


def test_given_keys_stay_given(sc):
    """A device without a price takes its catalog entry's: re-validating must not turn the
    default price into a given one (fields_set survives with_)."""
    assert sc.placement.devices["gpu"].price > 0
    new = sc.with_(serving={"max_batch": 2}, file="f")
    assert new.placement.devices["gpu"].price == sc.placement.devices["gpu"].price
    assert "price_per_hour" not in new.placement.devices["gpu"].model_fields_set


def test_validated_once_after_every_change(sc):
    # clearing [draft] alone leaves speculation without a drafter: fine, the next change fixes it
    new = sc.with_({"draft": None}, {"draft": {"kind": "ngram"}}, file="f")
    assert new.gamma == 3
    # but the end result is validated like a file: cross-section rules, file and key named
    with pytest.raises(InputError) as ei:
        sc.with_(placement={"draft": "gpu", "overlap": True}, file="study.toml")
    assert (ei.value.file, ei.value.key) == ("study.toml", "placement.overlap")
    assert "different devices" in ei.value.reason
    with pytest.raises(InputError) as ei:
        sc.with_(serving={"max_bach": 2}, file="study.toml")
    assert ei.value.line() == "study.toml: serving.max_bach: unknown key"
    with pytest.raises(InputError) as ei:
        sc.with_({"draft": None}, {"draft": {"kind": "model"}}, file="study.toml")
    assert ei.value.key == "draft" and "needs `cost` or `profile`" in ei.value.reason
