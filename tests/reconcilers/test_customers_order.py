"""Till customer edits are applied in the till's order, never in the order of wall clocks.

With a per-customer ``sequence`` (contract: ``till.customer.upserted``/``deleted``), the edit
with the highest sequence is what stays, whatever order the edits arrive in and however their
``occurred_at`` is skewed; every edit that arrives after a higher one is recorded and reported
at warning. Without a sequence, edits apply in the order received. Redeliveries change nothing.
The reconciler is pure: the same messages give the same decisions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st

from reconcilers.context import RECENT_IDS
from reconcilers.dispatch import reconcile
from reconcilers.state import Decision, MemoryState, Note
from topics.envelope import Envelope
from topics.till import CustomerDeleted, CustomerUpserted

TENANT = "shop"
TILL_ID = "C1"
START = dt.datetime(2026, 3, 14, 9, 0, tzinfo=dt.UTC)
OUT_OF_ORDER = "customer.till_edit_out_of_order"

#: One till edit: (sequence or None, name or None for a deletion, clock skew in seconds).
Edit = tuple[int | None, str | None, int]
SKEW = st.integers(min_value=-600, max_value=600)


def message(n: int, edit: Edit) -> Envelope:
    sequence, name, skew = edit
    envelope: dict[str, Any] = {
        "id": f"m{n}",
        "tenant": TENANT,
        "occurred_at": START + dt.timedelta(seconds=n + skew),
    }
    data: dict[str, Any] = {"till_customer_id": TILL_ID, "sequence": sequence}
    if name is None:
        return CustomerDeleted.model_validate({**envelope, "data": data})
    return CustomerUpserted.model_validate(
        {**envelope, "data": {**data, "customer": {"name": name}}}
    )


def run(messages: list[Envelope]) -> tuple[MemoryState, list[Note], list[Decision]]:
    state = MemoryState()
    notes: list[Note] = []
    decisions: list[Decision] = []
    for msg in messages:
        decision = reconcile(state, msg)
        state.apply(decision)
        notes.extend(decision.notes)
        decisions.append(decision)
    return state, notes, decisions


def name_of(state: MemoryState) -> str | None:
    rec = state.get("cust.till", TILL_ID)
    assert rec is not None
    fields = rec.get("fields")
    return None if fields is None else str(fields["name"])


@st.composite
def sequenced_edits(draw: st.DrawFn) -> list[Edit]:
    """Distinct sequences in any arrival order, some deletions, any clock skew. At most
    RECENT_IDS of them: a record remembers that many message ids to tell a redelivery (the
    runtimes deliver a till event id once; this is the reconciler's second line)."""
    sequences = draw(st.lists(st.integers(0, 1000), min_size=1, max_size=RECENT_IDS, unique=True))
    order = draw(st.permutations(sequences))
    return [(seq, None if draw(st.integers(0, 4)) == 0 else f"v{seq}", draw(SKEW)) for seq in order]


@settings(max_examples=150, deadline=None)
@given(edits=sequenced_edits(), redeliver=st.lists(st.integers(0, RECENT_IDS - 1), max_size=4))
def test_the_highest_sequence_wins_whatever_the_clocks(
    edits: list[Edit], redeliver: list[int]
) -> None:
    messages = [message(n, edit) for n, edit in enumerate(edits)]
    # Redeliveries (same id, same content) anywhere after the original.
    for i in redeliver:
        if i < len(messages):
            messages.append(messages[i])
    state, notes, _ = run(messages)
    highest = max(edits, key=lambda e: e[0] or 0)
    assert name_of(state) == highest[1]
    rec = state.get("cust.till", TILL_ID)
    assert rec is not None and rec["till_sequence"] == highest[0]
    # Every edit that arrived after a higher one: one warning each, and a report naming it.
    late = [
        edit[0]
        for n, edit in enumerate(edits)
        if any((earlier[0] or 0) > (edit[0] or 0) for earlier in edits[:n])
    ]
    warnings = [n for n in notes if n.event == OUT_OF_ORDER]
    note(f"late={late} warnings={[w.fields for w in warnings]}")
    assert sorted(w.fields["sequence"] for w in warnings) == sorted(late)
    assert all(w.level == "warning" for w in warnings)
    if late:
        report = state.get("report", f"customer:{TILL_ID}:order")
        assert report is not None and report["kind"] == "till_edit_out_of_order"


@settings(max_examples=200, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.none(), st.sampled_from(["a", "b", "c", None]), SKEW), min_size=1, max_size=10
    )
)
def test_without_a_sequence_the_last_received_wins(edits: list[Edit]) -> None:
    """A till that sends no sequence: receive order, whatever ``occurred_at`` says (an edit
    stamped minutes ahead no longer turns the next, real edit into a no-op)."""
    state, notes, _ = run([message(n, edit) for n, edit in enumerate(edits)])
    assert name_of(state) == edits[-1][1]
    assert not [n for n in notes if n.event == OUT_OF_ORDER]


@settings(max_examples=100, deadline=None)
@given(edits=sequenced_edits())
def test_the_same_messages_give_the_same_decisions(edits: list[Edit]) -> None:
    messages = [message(n, edit) for n, edit in enumerate(edits)]
    _, _, first = run(messages)
    _, _, second = run(messages)
    assert [(d.puts, d.notes, d.wake_at) for d in first] == [
        (d.puts, d.notes, d.wake_at) for d in second
    ]


def test_the_issues_case_an_edit_stamped_four_minutes_ahead() -> None:
    ahead = message(0, (None, "stamped-ahead", 240))
    real = message(1, (None, "real-latest", 0))
    state, notes, _ = run([ahead, real])
    assert name_of(state) == "real-latest"
    assert [n.event for n in notes if n.event.startswith("customer.till")] == []


def test_an_equal_sequence_with_the_same_content_is_a_quiet_repeat() -> None:
    """A till resending one edit under a new message id: nothing to report."""
    state, notes, _ = run([message(0, (4, "x", 0)), message(1, (4, "x", 0))])
    assert name_of(state) == "x"
    assert [n.event for n in notes] == ["customer.till_event_repeated"]
    assert [n.level for n in notes] == ["info"]
    state, notes, _ = run([message(0, (4, "x", 0)), message(1, (4, "y", 0))])
    assert name_of(state) == "x"
    assert [(n.event, n.level) for n in notes] == [(OUT_OF_ORDER, "warning")]
