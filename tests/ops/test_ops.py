"""The ops read model and the operator's actions, on the embedded runtime's store."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from engine.clock import utcnow
from engine.ops import (
    AMBER_PENDING_SECONDS,
    RED_PENDING_SECONDS,
    RETRY_FLOWS,
    STALE_POLL_SECONDS,
    Conflict,
    FlowFacts,
    Light,
    NotFound,
    Throughput,
    flow_of,
    judge_flow,
    progress,
    worst,
)
from engine.store.outbox import DeadLetters
from reconcilers import dispatch
from tests.ops.world import (
    TENANT,
    add_tenant,
    deliver,
    new_engine,
    paused_with_dead_letters,
)
from topics import fortnox as fx
from topics import registry
from topics.errors import ErrorKind, shop_error
from topics.names import Topic
from topics.outcomes import OutcomeStatus
from topics.till import StockMovement, StockMovementData

NOW = 1_800_000_000.0


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


# --- lights (pure) ------------------------------------------------------------------------


def test_a_flow_is_green_when_nothing_is_wrong_and_off_when_turned_off() -> None:
    ok = judge_flow(FlowFacts("stock", enabled=True, record={"last_ok": _iso(NOW)}), NOW)
    assert ok.light is Light.GREEN and ok.reasons[0].startswith("last success")
    off = judge_flow(FlowFacts("ledger", enabled=False), NOW)
    assert off.light is Light.OFF
    # A flow that is off still shows red when it has dead letters.
    assert judge_flow(FlowFacts("ledger", enabled=False, dead_letters=1), NOW).light is Light.RED


def test_red_means_a_person_must_act() -> None:
    paused = shop_error(ErrorKind.LOGIN_EXPIRED, tenant="t")
    cases = [
        FlowFacts("stock", enabled=True, paused=paused),
        FlowFacts("stock", enabled=True, dead_letters=2),
        FlowFacts("zreports", enabled=True, blocked=1, blocked_error="series F is not manual"),
        FlowFacts("stock", enabled=True, pending=1, oldest_pending=NOW - RED_PENDING_SECONDS),
    ]
    for facts in cases:
        status = judge_flow(facts, NOW)
        assert status.light is Light.RED, facts
    assert "series F is not manual" in judge_flow(cases[2], NOW).reasons[0]
    # Paused does not light a flow that is off.
    assert judge_flow(FlowFacts("ledger", enabled=False, paused=paused), NOW).light is Light.OFF


def test_amber_means_degraded_or_waiting() -> None:
    failing = {"last_ok": _iso(NOW - 600), "last_error": _iso(NOW - 60), "retrying": 3}
    rejected = {"last_ok": _iso(NOW - 600), "last_error": _iso(NOW - 60), "error": {"x": 1}}
    cases = [
        FlowFacts("stock", enabled=True, pending=1, oldest_pending=NOW - AMBER_PENDING_SECONDS),
        FlowFacts("stock", enabled=True, record=failing),
        FlowFacts("stock", enabled=True, record=rejected),
        FlowFacts("zreports", enabled=True, waiting=1),
        FlowFacts("articles", enabled=True, conflicts=3),
        FlowFacts("articles", enabled=True, poll_last_ok=NOW - STALE_POLL_SECONDS - 1),
    ]
    for facts in cases:
        assert judge_flow(facts, NOW).light is Light.AMBER, facts
    # Recovered: a success after the last error is green again.
    recovered = {"last_ok": _iso(NOW), "last_error": _iso(NOW - 60), "retrying": 3}
    assert judge_flow(FlowFacts("stock", enabled=True, record=recovered), NOW).light is Light.GREEN


def test_worst_light_and_flow_of_types() -> None:
    assert worst([Light.GREEN, Light.OFF, Light.AMBER]) is Light.AMBER
    assert worst([]) is Light.OFF
    for model in registry.ALL:
        flow = flow_of(registry.type_name(model))
        assert flow is None or flow in dispatch.FLOWS
    assert flow_of("till.payment.register") == "payments"
    assert flow_of("fortnox.voucher.create") == "zreports"
    assert flow_of("fortnox.voucher.changed") == "ledger"
    assert flow_of("sync.tick") is None


# --- read model over a real engine --------------------------------------------------------


async def test_overview_shows_the_paused_tenant_and_its_dead_letters(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    await paused_with_dead_letters(engine, "1", "2")
    [summary] = engine.ops.overview()
    assert summary.tenant == TENANT and summary.name == "Bageriet i Byn AB"
    assert summary.paused is not None and summary.paused.kind is ErrorKind.LOGIN_EXPIRED
    assert summary.dead_letters == 2 and summary.light is Light.RED
    lights = {f.flow: f.light for f in summary.flows}
    assert lights["payments"] is Light.RED
    assert lights["zreports"] is Light.OFF  # off by default, paused or not
    payments = next(f for f in summary.flows if f.flow == "payments")
    assert any("2 dead letter(s)" in r for r in payments.reasons)
    assert payments.rejected == 2 and payments.error is not None

    detail = engine.ops.tenant(TENANT)
    assert detail is not None
    assert [d.type for d in detail.dead_letters] == ["till.payment.register"] * 2
    assert detail.dead_letters[0].error.kind is ErrorKind.TILL_REFUSED
    assert "not mapped" in detail.dead_letters[0].error.message
    assert detail.counts["payments"] == 2 and detail.depth == {}
    assert engine.ops.tenant("nobody") is None

    system = engine.ops.system()
    assert system.runtime == "embedded" and system.tenants == 1 and system.paused == 1
    assert system.dead_letters == 2
    assert {lag.topic for lag in system.lag} == {
        t.value
        for t in Topic
        if t.value in {"till.events", "fortnox.changes", "sync.outcomes", "sync.control"}
    }
    assert all(lag.lag == 0 for lag in system.lag)
    assert system.workers[0].worker.startswith("embedded@")


async def test_retry_of_a_flow_without_its_own_retry_requeues_the_command(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    till = await paused_with_dead_letters(engine)
    [letter] = engine.ops.dead_letters(tenant=TENANT)
    assert "payments" not in RETRY_FLOWS
    result = engine.ops.retry(letter.id)
    assert result.requeued and not result.replayed and result.tenant == TENANT
    assert engine.ops.dead_letters(tenant=TENANT) == []
    assert [d.id for d in engine.ops.dead_letters(status="retried")] == [letter.id]
    control = [
        r
        for r in engine.edge.log.read([Topic.SYNC_CONTROL], {}, 100)
        if r.type == "sync.deadletter.action"
    ]
    assert [json.loads(c.payload)["data"] for c in control] == [
        {"dead_letter_id": letter.id, "action": "retry"}
    ]
    assert engine.edge.outbox.depth(TENANT) == {"till": 1}
    with pytest.raises(Conflict):
        engine.ops.retry(letter.id)
    with pytest.raises(NotFound):
        engine.ops.discard("no-such-letter")
    till.accept = True
    await deliver(engine, till)
    assert [c["type"] for c in till.received] == ["till.payment.register"]
    engine.ops.resume(TENANT)
    engine.processor.step()
    [summary] = engine.ops.overview()
    assert summary.paused is None and summary.dead_letters == 0
    payments = next(f for f in summary.flows if f.flow == "payments")
    # The reconciler kept the command's record through the retry, so the requeued command's
    # success settles the flow at once: green.
    assert payments.light is Light.GREEN and payments.done == 1


async def test_discard_drops_the_command_and_marks_the_letter(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    await paused_with_dead_letters(engine)
    [letter] = engine.ops.dead_letters()
    result = engine.ops.discard(letter.id)
    assert result.action == "discard"
    row = engine.db.conn.execute(
        "SELECT status FROM outbox WHERE command_id = ?", (letter.id,)
    ).fetchone()
    assert row == ("discarded",)
    assert [d.id for d in engine.ops.dead_letters(status="discarded")] == [letter.id]


async def test_retry_of_a_flow_with_its_own_retry_leaves_the_old_command(tmp_path: Path) -> None:
    """An article the till refused: the articles flow retries by itself (a new command from the
    current state), so the dead command is not requeued."""
    engine = new_engine(tmp_path)
    add_tenant(engine)
    engine.ops.store.append(
        fx.FortnoxArticleChanged(
            id="fx-a1",
            tenant=TENANT,
            occurred_at=utcnow(),
            data=fx.FortnoxArticleData(
                article=fx.FortnoxArticle(article_number="A1", description="Limpa"),
                observed=fx.Observation(seq=1),
            ),
        )
    )
    engine.processor.step()
    engine.scheduler.due(utcnow())
    engine.processor.step()
    pending = engine.edge.outbox.head("till", TENANT)
    assert pending is not None and pending.type == "till.article.upsert"
    # The till refuses it for good.
    engine.ports.settle(
        pending,
        OutcomeStatus.REJECTED,
        error=shop_error(ErrorKind.INVALID_INPUT, detail="unit 'st' unknown"),
    )
    assert engine.ops.store.record(TENANT, "cmd", pending.command_id)["flow"] == "articles"
    result = engine.ops.retry(pending.command_id)
    assert not result.requeued
    status = engine.db.conn.execute(
        "SELECT status FROM outbox WHERE command_id = ?", (pending.command_id,)
    ).fetchone()
    assert status == ("dead",)


async def test_a_parked_message_is_appended_again_on_retry(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    add_tenant(engine)
    movement = StockMovement(
        id="mv-1",
        tenant=TENANT,
        occurred_at=utcnow(),
        source="till",
        data=StockMovementData(article_number="A1", movement_id="m1", delta=-1, reason="sale"),
    )
    with engine.db.transaction():
        DeadLetters(engine.db).add(
            "msg:till.events:7",
            TENANT,
            "till.events",
            movement.type,
            registry.dump(movement),
            shop_error(ErrorKind.INVALID_INPUT, detail="KeyError: 'x'"),
        )
        DeadLetters(engine.db).add(
            "msg:till.events:8",
            TENANT,
            "till.events",
            movement.type,
            b'{"not": "a message"}',
            shop_error(ErrorKind.INVALID_INPUT, detail="bad"),
        )
    before = engine.edge.log.count(Topic.TILL_EVENTS)
    assert engine.ops.retry("msg:till.events:7").replayed
    assert engine.edge.log.count(Topic.TILL_EVENTS) == before + 1
    unreadable = engine.ops.retry("msg:till.events:8")
    assert not unreadable.replayed
    assert engine.edge.log.count(Topic.TILL_EVENTS) == before + 1
    # Said, not "retry done": nothing was sent, and the dead letter stays open to discard.
    assert unreadable.noop and unreadable.note.startswith("Nothing was sent again"), unreadable
    [still] = [d for d in engine.ops.dead_letters(tenant=TENANT) if d.id == "msg:till.events:8"]
    assert still.status == "open"


async def test_drift_proxy_counts_unsettled_stock_and_unsent_articles(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    add_tenant(engine)
    store = engine.processor.store
    store.put(
        TENANT,
        "stock",
        "A1",
        {
            "base": "0",
            "till": "3",
            "fx": "0",
            "to_fx": "3",
            "to_till": "0",
            "till_since": "3",
            "fx_since": "0",
        },
    )
    store.put(
        TENANT,
        "stock",
        "A2",
        {
            "base": "1",
            "till": "1",
            "fx": "1",
            "to_fx": "0.00",
            "to_till": "0",
            "till_since": "0",
            "fx_since": "0",
        },
    )
    article = {"article_number": "A3", "description": "Bulle"}
    store.put(TENANT, "art.want", "A3", {"in_till": True, "article": article})
    store.put(TENANT, "art.want", "A4", {"in_till": True, "article": article})
    store.put(TENANT, "art.till", "A4", {"sent": article})
    store.put(TENANT, "art.want", "A5", {"in_till": False, "reason": "excluded"})
    store.put(
        TENANT,
        "art.want",
        "A6",
        {"in_till": False, "reason": "barcode_conflict", "holder": "A4", "ean_waiting": "735"},
    )
    # Fortnox has an EAN with a space: the till keeps its last version, the shop must fix it.
    store.put(
        TENANT,
        "art.want",
        "A7",
        {"in_till": True, "reason": "till_refuses", "fields": ["ean"], "keep": True},
    )
    store.put(TENANT, "art.till", "A7", {"sent": article})
    with engine.db.transaction():
        store.stage()
        store.write()
    store.committed(written=True)
    drift = engine.ops.store.drift(TENANT)
    assert (drift.unsettled_stock, drift.unsent_articles) == (1, 1)
    assert drift.stock_samples == ("A1",) and drift.article_samples == ("A3",)
    detail = engine.ops.tenant(TENANT)
    assert detail is not None
    assert detail.exclusions == ("A5",)
    assert [k for k, _ in detail.conflicts] == ["A6"]
    articles = next(f for f in detail.summary.flows if f.flow == "articles")
    assert articles.light is Light.AMBER
    assert "1 article(s) held back by a barcode conflict" in articles.reasons
    assert "1 article(s) with values the till cannot take: fix them in Fortnox" in articles.reasons


async def test_pause_by_operator_stops_the_fortnox_session(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    add_tenant(engine)
    engine.ops.pause(TENANT, "moving the shop to a new Fortnox company")
    engine.processor.step()
    paused = engine.edge.paused(TENANT)
    assert paused is not None and "new Fortnox company" in paused.message
    engine.ops.resume(TENANT, "done")
    engine.processor.step()
    assert engine.edge.paused(TENANT) is None
    with pytest.raises(NotFound):
        engine.ops.pause("nobody", "x")


async def test_operator_messages_never_reuse_a_sequence_number(tmp_path: Path) -> None:
    """The tenant directory and the edge each count sequence numbers; ours skip past both."""
    engine = new_engine(tmp_path)
    add_tenant(engine)  # appended by the directory's own log
    engine.ops.resume(TENANT)
    engine.scheduler.due(utcnow())
    seqs = [r[0] for r in engine.db.conn.execute("SELECT seq FROM log_sync_control")]
    assert len(seqs) == len(set(seqs))


def test_throughput_is_per_topic_over_the_window() -> None:
    now = [100.0]
    meter = Throughput(window=10.0, clock=lambda: now[0])
    now[0] = 120.0
    meter.add_types({"till.stock.movement": 30, "sync.tick": 10})
    assert meter.rates() == {"sync.control": 1.0, "till.events": 3.0}
    now[0] = 131.0
    assert meter.rates() == {}


def test_progress_counts_and_draws_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with progress(3, "retrying dead letters", console=console) as bar:
        for _ in range(3):
            bar.advance()
            time.sleep(0.01)
        bar.note("done")
    assert bar.done == 3 and "3/3" in out.getvalue()
    with progress(None, "quiet", enabled=False) as silent:
        silent.advance(2)
    assert silent.done == 2
