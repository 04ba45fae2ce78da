"""The benchmarks count what they really handled: the Kafka throughput's timed span, the replay's
in-memory baseline (issue 15: the replay once divided by messages it never replayed), the scale
benchmark's equal work for 10 and 1,000 tenants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import scale
from bench.kafka_throughput import applied_span
from bench.replay import IndexedState, run
from reconcilers.state import MemoryState, Record


def test_the_kafka_span_counts_only_the_batches_inside_it() -> None:
    # The first batch's work happened before its timestamp: its messages are not in the span.
    measured = applied_span([(12.0, 300), (10.0, 500), (11.0, 200)])
    assert measured.messages == 500
    assert measured.seconds == pytest.approx(2.0)
    assert measured.per_second == pytest.approx(250.0)


@pytest.mark.parametrize("batches", [[], [(1.0, 10)], [(1.0, 10), (1.0, 5)]])
def test_the_kafka_span_refuses_what_it_cannot_time(batches: list[tuple[float, int]]) -> None:
    with pytest.raises(RuntimeError):
        applied_span(batches)


def test_the_indexed_state_scans_as_the_memory_state_does() -> None:
    puts: list[dict[tuple[str, str], Record | None]] = [
        {("art", "2"): {"n": 2}, ("art", "1"): {"n": 1}, ("stock", "1"): {"q": 5}},
        {
            ("art", "1"): None,
            ("art", "3"): {"n": 3},
            ("dirty", "art:3"): {"since": "2026-12-05T10:00:00+00:00"},
        },
        {("art", "1"): {"n": 11}, ("dirty", "art:3"): None, ("stock", "9"): None},
    ]
    indexed, plain = IndexedState(), MemoryState()
    for step in puts:
        indexed.apply_puts(step)
        plain.apply_puts(step)
        for kind in ("art", "stock", "dirty", "none"):
            assert list(indexed.scan(kind)) == list(plain.scan(kind))
    assert [key for key, _ in indexed.scan("art")] == ["1", "2", "3"]


def test_a_small_replay_handles_every_message_in_every_pass(tmp_path: Path) -> None:
    result = run(2, 300, slice_size=700, cache=None, data_dir=tmp_path)
    assert result["replayed"] == result["messages"] == result["inmemory_messages"]
    assert result["inmemory_commands"] == result["commands"] > 0
    assert result["commands_match_recording"]
    assert result["replay_vs_inmemory_ratio"] > 0


def _scale_work(tenants: int, messages: int) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Per message type, how many; per tenant, the articles its messages were about."""
    types: dict[str, int] = {}
    articles: dict[str, list[str]] = {}
    for _topic, tenant, payload in scale.stream(tenants, messages, 200, round_=1):
        message = json.loads(payload)
        types[message["type"]] = types.get(message["type"], 0) + 1
        data = message["data"]
        if message["type"] != "sync.tick":
            number = data.get("article_number") or data["article"]["article_number"]
            articles.setdefault(tenant, []).append(number)
    return types, articles


def test_the_scale_stream_gives_any_number_of_tenants_the_same_work() -> None:
    # Few tenants once met the same article again (cached, and coalesced with a stock write in
    # flight) and ended with changes no tick flushed; many tenants almost never did.
    few, few_articles = _scale_work(2, 300)
    many, many_articles = _scale_work(30, 300)
    assert sum(few.values()) == sum(many.values()) == 330
    assert few["sync.tick"] == many["sync.tick"] == 30
    for per_tenant in (few_articles, many_articles):
        assert len({len(numbers) for numbers in per_tenant.values()}) == 1
        for numbers in per_tenant.values():
            assert len(set(numbers)) == len(numbers)  # no article twice
            assert all(int(number[1:]) % 5 != 0 for number in numbers)  # stock goods only


@pytest.mark.parametrize(("tenants", "messages"), [(10, 105), (10, 150), (1, 170)])
def test_the_scale_stream_refuses_an_uneven_split(tenants: int, messages: int) -> None:
    with pytest.raises(ValueError):
        list(scale.stream(tenants, messages, 200))


def test_a_scale_run_counts_what_it_appended_processed_and_commanded(tmp_path: Path) -> None:
    path = tmp_path / "scale.db"
    scale.build(path, 3, articles=200)
    result = scale.measure(path, 3, 60, 200, round_=1)
    assert result["appended"] == result["messages"] == 66
    assert result["commands"] > 0


def test_a_scale_round_with_unequal_work_fails() -> None:
    one = {"tenants": 10, "messages": 66_000, "commands": 71_930}
    scale._same_work([one, {**one, "tenants": 1000, "commands": 71_976}])
    with pytest.raises(RuntimeError, match="messages"):
        scale._same_work([one, {**one, "tenants": 1000, "messages": 65_550}])
    with pytest.raises(RuntimeError, match="commands"):  # a second round on the store left
        scale._same_work([{**one, "commands": 41_277}, {**one, "tenants": 1000}])


def test_two_small_scale_rounds_do_the_same_work_at_both_tenant_counts(tmp_path: Path) -> None:
    result = scale.run((2, 4), messages=80, articles=200, rounds=2, data_dir=tmp_path)
    runs = result["runs"]
    assert [(x["round"], x["tenants"]) for x in runs] == [(1, 2), (1, 4), (2, 2), (2, 4)]
    assert {x["messages"] for x in runs} == {x["appended"] for x in runs} == {88}
    assert min(x["commands"] for x in runs) > 0
    assert result["per_event_cost_ratio_1000_vs_10"] > 0
