"""The benchmarks count what they really handled: the Kafka throughput's timed span, the replay's
in-memory baseline (issue 15: the replay once divided by messages it never replayed)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
