"""The supervisor on its own: crashes are logged with their traceback, counted and restarted with
backoff; health names the loop and the cause while it is down, and turns green by itself."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3

import pytest
from structlog.testing import capture_logs

from engine.secrets import SecretBox, SecretDecryptError, generate_key
from engine.supervision import Supervisor, describe


class Counted:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def loop_restarted(self, kind: str) -> None:
        self.kinds.append(kind)


async def test_a_crashing_loop_is_logged_counted_restarted_and_red_until_it_runs() -> None:
    counted = Counted()
    sup = Supervisor(counted, backoff_first=0.02, backoff_max=0.1, stable_seconds=0.3)
    stop = asyncio.Event()
    runs = 0
    broken = True

    async def body() -> None:
        nonlocal runs
        runs += 1
        if broken:
            raise RuntimeError("boom")
        await stop.wait()

    with capture_logs() as logs:
        sup.spawn("processor", body, stop)
        await asyncio.sleep(0.3)
        health = sup.health()
        assert not health.ok
        assert [p.loop for p in health.problems] == ["processor"]
        assert "RuntimeError: boom" in health.problems[0].cause
        assert runs >= 3  # restarted, not dead
        assert set(counted.kinds) == {"processor"} and len(counted.kinds) == runs
        broken = False
        await asyncio.sleep(0.6)  # a restart (<= 0.1 s) plus a stable run of 0.3 s
        assert sup.health().ok
        restarts = runs
        await asyncio.sleep(0.2)
        assert runs == restarts  # it stays up
        stop.set()
        await asyncio.gather(*sup.tasks())
    crashed = [e for e in logs if e["event"] == "loop.crashed"]
    assert crashed and all(e["log_level"] == "error" and e["exc_info"] for e in crashed)
    assert crashed[0]["loop"] == "processor" and "boom" in crashed[0]["cause"]


async def test_backoff_grows_between_restarts() -> None:
    clock = asyncio.get_running_loop().time
    sup = Supervisor(backoff_first=0.02, backoff_max=0.32, stable_seconds=10)
    stop = asyncio.Event()
    starts: list[float] = []

    async def body() -> None:
        starts.append(clock())
        raise OSError("nope")

    with capture_logs():
        sup.spawn("ticks", body, stop)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*sup.tasks())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Jitter is 50-100 % of the delay: 0.01-0.02, 0.02-0.04, 0.04-0.08, 0.08-0.16, ...
    assert len(starts) < 12, gaps  # without backoff it would be thousands
    assert gaps[-1] > gaps[0] * 2


async def test_a_loop_that_returns_unasked_is_restarted_and_a_finite_one_is_not() -> None:
    sup = Supervisor(backoff_first=0.01, stable_seconds=10)
    stop = asyncio.Event()
    calls = {"endless": 0, "finite": 0}

    async def endless() -> None:
        calls["endless"] += 1

    async def finite() -> None:
        calls["finite"] += 1

    with capture_logs():
        sup.spawn("till", endless, stop)
        sup.spawn("till:shop", finite, stop, finite=True)
        await asyncio.sleep(0.2)
        assert calls["finite"] == 1 and not sup.alive("till:shop")
        assert calls["endless"] > 1
        problems = {p.loop: p.cause for p in sup.health().problems}
        assert "ended without being asked" in problems["till"]
        assert "till:shop" not in problems
        stop.set()
        await asyncio.gather(*sup.tasks())


async def test_a_backlog_that_does_not_move_is_red_and_green_again_when_it_moves() -> None:
    now = [0.0]
    sup = Supervisor(clock=lambda: now[0], stall_seconds=5)
    reading = [(10, 100)]
    sup.watch("processor.lag", lambda: reading[0])
    sup.sample()
    now[0] = 4.9
    sup.sample()
    assert sup.health().ok
    now[0] = 5.1
    sup.sample()
    (problem,) = sup.health().problems
    assert problem.loop == "processor.lag" and "10 waiting, no progress" in problem.cause
    reading[0] = (12, 101)  # it moved: progress, even with more waiting
    sup.sample()
    assert sup.health().ok
    reading[0] = (0, 101)  # nothing waiting is never a stall
    now[0] = 60
    sup.sample()
    assert sup.health().ok


def test_faults_and_checks_name_the_cause_once_and_clear() -> None:
    sup = Supervisor()
    free = [0]
    sup.check("disk", lambda: None if free[0] else "disk full: 0 bytes free")
    with capture_logs() as logs:
        sup.sample()
        sup.sample()
    assert [p.cause for p in sup.health().problems] == ["disk full: 0 bytes free"]
    assert [e["event"] for e in logs] == ["loop.fault"]  # logged once, at error
    assert logs[0]["log_level"] == "error"
    free[0] = 1
    sup.sample()
    assert sup.health().ok


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        (sqlite3.OperationalError("database or disk is full"), "disk full"),
        (sqlite3.OperationalError("unable to open database file"), "cannot be opened"),
        (OSError(28, "No space left on device"), "disk full"),
        (PermissionError(13, "Permission denied"), "permission denied"),
    ],
)
def test_causes_are_named_for_an_operator(failure: Exception, says: str) -> None:
    assert says in describe(failure)


def test_a_wrong_secret_key_is_named_without_the_secret() -> None:
    sealed = SecretBox(generate_key()).seal("till-token-abc", "shop:till")
    other = SecretBox(generate_key())
    with pytest.raises(SecretDecryptError) as failed:
        other.open(sealed, "shop:till")
    cause = describe(failed.value)
    assert "KASSASYNC_SECRET_KEY" in cause
    assert "till-token-abc" not in cause


def test_a_refused_record_is_named_without_its_data() -> None:
    from pydantic import BaseModel, Field, ValidationError

    class Article(BaseModel):
        ean: str = Field(pattern=r"^\d+$")

    with pytest.raises(ValidationError) as failed:
        Article(ean="123 456 private-customer@example.com")
    cause = describe(failed.value)
    assert cause.startswith("ValidationError (Article, 1 errors): ean:")
    assert "private-customer" not in cause
    assert len(describe(RuntimeError("x" * 5000))) <= 400


async def test_at_a_stop_loops_that_do_not_end_in_time_are_cancelled_and_the_rest_wait() -> None:
    sup = Supervisor()
    stop = asyncio.Event()
    unwound: list[str] = []

    async def deaf() -> None:  # ignores the stop (a session waiting for Fortnox's answer)
        try:
            await asyncio.sleep(60)
        finally:
            unwound.append("deaf")

    async def prompt() -> None:
        await stop.wait()
        await asyncio.sleep(0.05)  # a little work at the stop, well within the time
        unwound.append("prompt")

    sup.spawn("session:a", deaf, stop, kind="session", finite=True)
    sup.spawn("session:b", prompt, stop, kind="session", finite=True)
    other = sup.spawn("processor", lambda: stop.wait(), stop)
    await asyncio.sleep(0.05)  # every loop running
    stop.set()
    started = asyncio.get_running_loop().time()
    with capture_logs() as logs:
        await sup.end("session", timeout=0.3)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert sorted(unwound) == ["deaf", "prompt"]
    assert sup.tasks(kind="session") == []
    cancelled = [e for e in logs if e["event"] == "loop.cancelled_at_stop"]
    assert [e["loops"] for e in cancelled] == [["session:a"]]
    await other
