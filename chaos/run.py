"""One chaos run: start a runtime, send the workload while killing its processes, let it settle,
and read both sides; and the comparison of an interrupted run with an uninterrupted one.

Kills come in two kinds, half and half:

* **at a random moment**: 0.3-2.2 s after the previous restart, whatever the process is doing
  (starting up, migrating, polling, reconciling, answering the till);
* **right after a committed write**: the next write the process makes to Fortnox or to the
  till is committed, and the process is SIGKILLed before the answer reaches it, the moment a
  retry could create a duplicate. (The harness serves both sides, so it sees the write.)

Each killed process is started again after 0.05-0.5 s. A process that dies on its own is
restarted too, and counted (``unplanned_exits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from chaos import compare
from chaos.compare import TenantState
from chaos.processes import Proc, owner_of
from chaos.targets import Target
from chaos.workload import TenantPlan, Workload
from chaos.world import World

SEND_TIMEOUT = 900.0


def note(text: str) -> None:
    print(f"chaos: {text}", file=sys.stderr, flush=True)


@dataclass
class RunResult:
    states: dict[str, TenantState]
    kills: int = 0
    kills_after_write: int = 0
    unplanned_exits: int = 0
    disturbances: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unlogged: list[str] = field(default_factory=list)
    settled: bool = False
    seconds: float = 0.0


class TillSender:
    """What the tills do: send their batches until acknowledged (same ids on every resend),
    keep their own stock, and, after each batch, let Fortnox's side of the workload happen."""

    def __init__(self, workload: Workload, rng: random.Random) -> None:
        self.rng = rng
        self.acked: dict[str, list[str]] = {t: [] for t in workload.tenants}
        self.refused: list[str] = []

    async def send(
        self,
        world: World,
        http: httpx.AsyncClient,
        plan: TenantPlan,
        url: str,
        key: str,
        pace: float,
        batches: slice = slice(None),
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        deadline = time.monotonic() + SEND_TIMEOUT
        till = world.tills[plan.tenant]
        for index in range(len(plan.batches))[batches]:
            batch = plan.batches[index]
            # The till's own stock follows its own sales at once; Kassasync brings only
            # Fortnox's changes to it.
            for event in batch:
                if event["type"] == "till.stock.movement":
                    number = event["data"]["article_number"]
                    till.stock[number] = till.stock.get(number, Decimal(0)) + Decimal(
                        event["data"]["delta"]
                    )
            delay = 0.1
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{plan.tenant}: batch {index} never acknowledged")
                try:
                    response: httpx.Response | None = await http.post(
                        url, json={"events": batch}, headers=headers
                    )
                except httpx.HTTPError:
                    response = None
                status = 0 if response is None else response.status_code
                if status in (200, 202):
                    self.acked[plan.tenant] += [e["id"] for e in batch]
                    break
                if 400 <= status < 500 and status not in (408, 425, 429):
                    assert response is not None
                    self.refused.append(
                        f"{plan.tenant} batch {index}: {status} {response.text[:300]}"
                    )
                    break
                await asyncio.sleep(delay * (0.5 + self.rng.random()))
                delay = min(delay * 2, 2.0)
            for action in plan.after.get(index, []):
                await world.apply(plan.tenant, action)
            await asyncio.sleep(pace)


class ChaosRun:
    def __init__(
        self,
        target: Target,
        workload: Workload,
        *,
        kills: int,
        rng: random.Random,
        disturb: bool = False,
        settle_timeout: float = 240.0,
    ) -> None:
        self.target = target
        self.workload = workload
        self.kills = kills
        self.rng = rng
        self.disturb = disturb
        self.settle_timeout = settle_timeout
        self.till = TillSender(workload, rng)
        self.result = RunResult(states={})

    # -- the kills ------------------------------------------------------------------------------

    def _victims(self) -> list[Proc]:
        return [p for p in self.target.procs if p.alive()]

    def _choose(self) -> Proc | None:
        alive = self._victims()
        if not alive:
            return None
        # The ingest process of the Kafka runtime holds no state: kill it less often.
        weights = [1 if p.name == "ingest" else 4 for p in alive]
        return self.rng.choices(alive, weights=weights)[0]

    async def _kill_after_write(self, world: World, timeout: float) -> Proc | None:
        loop = asyncio.get_running_loop()
        fired: asyncio.Future[Proc] = loop.create_future()

        def hook(side: str, port: int, method: str, path: str) -> None:
            if fired.done():
                return
            proc = owner_of(port, self._victims())
            if proc is None:
                return
            proc.kill()
            fired.set_result(proc)

        world.set_hook(hook)
        try:
            return await asyncio.wait_for(fired, timeout)
        except TimeoutError:
            return None
        finally:
            world.set_hook(None)

    async def _chaos(self, world: World) -> None:
        disturb_at = self.kills // 2 if self.disturb else -1
        for number in range(self.kills):
            if number == disturb_at:
                done = await self.target.disturb()
                if done:
                    note(done)
                    self.result.disturbances.append(done)
            victim: Proc | None = None
            if self.rng.random() < 0.5:
                await asyncio.sleep(self.rng.uniform(0.0, 1.0))
                victim = await self._kill_after_write(world, timeout=4.0)
                if victim is not None:
                    self.result.kills_after_write += 1
            if victim is None:
                await asyncio.sleep(self.rng.uniform(0.3, 2.2))
                victim = self._choose()
                if victim is None:
                    continue
                victim.kill()
            self.result.kills += 1
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
            victim.start()

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for proc in self.target.procs:
                if not proc.held and not proc.alive() and proc.starts:
                    self.result.unplanned_exits += 1
                    note(f"{proc.name} exited on its own (see {proc.log}); restarting it")
                    proc.start()

    # -- settling -------------------------------------------------------------------------------

    async def _settle(self, world: World) -> dict[str, TenantState]:
        deadline = time.monotonic() + self.settle_timeout
        previous: dict[str, TenantState] | None = None
        stable = 0
        while True:
            await asyncio.sleep(2.0)
            states = {t: await compare.snapshot(world, t) for t in self.workload.tenants}
            same = previous is not None and all(
                states[t].state == previous[t].state
                and states[t].duplicates == previous[t].duplicates
                for t in states
            )
            quiet = await asyncio.to_thread(self.target.quiet)
            if same and quiet is not False and compare.converged(self.workload, states):
                stable += 1
            else:
                stable = 0
            if stable >= 3:
                self.result.settled = True
                return states
            if time.monotonic() > deadline:
                note(f"{self.target.name}: did not settle in {self.settle_timeout:.0f}s")
                return states
            previous = states

    async def run(self, world: World) -> RunResult:
        started = time.monotonic()
        keys = await self.target.setup(world, self.workload)
        await self.target.start()
        batches = max(len(p.batches) for p in self.workload.plans)
        pace = max(0.05, self.kills * 1.4 / batches)
        watchdog = asyncio.create_task(self._watchdog())
        try:
            async with httpx.AsyncClient(timeout=15) as http:
                senders = [
                    self.till.send(
                        world,
                        http,
                        plan,
                        self.target.ingest_url(plan.tenant),
                        keys[plan.tenant],
                        pace,
                    )
                    for plan in self.workload.plans
                ]
                await asyncio.gather(self._chaos(world), *senders)
            note(f"{self.target.name}: workload sent, {self.result.kills} kills done; settling")
            self.result.states = await self._settle(world)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        self.result.unlogged = await self.target.unlogged(self.till.acked)
        self.result.refused = self.till.refused
        self.result.seconds = time.monotonic() - started
        return self.result


async def run_once(
    target: Target,
    workload: Workload,
    *,
    kills: int,
    seed: int,
    disturb: bool = False,
    settle_timeout: float = 240.0,
    rate_window: float = 5.0,
) -> RunResult:
    world = await World(
        workload.tenants, rate_window=rate_window, warehouse=workload.warehouse
    ).start()
    try:
        run = ChaosRun(
            target,
            workload,
            kills=kills,
            rng=random.Random(f"kills:{seed}"),
            disturb=disturb,
            settle_timeout=settle_timeout,
        )
        try:
            return await run.run(world)
        finally:
            await target.stop()
    finally:
        await world.stop()


def report(
    runtime: str,
    workload: Workload,
    chaos_run: RunResult,
    reference: RunResult,
    work: Path,
) -> tuple[dict[str, Any], list[str]]:
    """The JSON line of one runtime, and the details behind any non-zero figure."""
    found = compare.figures(workload, chaos_run.states, reference.states, chaos_run.unlogged)
    baseline = compare.figures(workload, reference.states, None, reference.unlogged)
    found.lost_events += sum(len(b) for b in _refused_batches(chaos_run.refused, workload))
    details = found.details + [f"refused: {r}" for r in chaos_run.refused]
    if not baseline.clean() or reference.refused:
        details += [f"uninterrupted run: {d}" for d in baseline.details]
        details += [f"uninterrupted run refused: {r}" for r in reference.refused]
    line: dict[str, Any] = {
        "runtime": runtime,
        "kills": chaos_run.kills,
        "duplicates": found.duplicates,
        "lost_movements": found.lost_movements,
        "lost_events": found.lost_events,
        "drift": found.drift,
        "kills_after_commit": chaos_run.kills_after_write,
        "unplanned_exits": chaos_run.unplanned_exits,
        "disturbances": chaos_run.disturbances,
        "settled": chaos_run.settled,
        "uninterrupted_clean": baseline.clean() and reference.settled and not reference.refused,
        "tenants": len(workload.plans),
        "events": workload.events,
        "seed": workload.seed,
        "webshop_overlaps_till": workload.overlap,
        "stock_mode": workload.stock_mode,
        "seconds": round(chaos_run.seconds, 1),
        "uninterrupted_seconds": round(reference.seconds, 1),
        "work": str(work),
    }
    return line, details


def _refused_batches(refused: list[str], workload: Workload) -> list[list[dict[str, Any]]]:
    out = []
    for item in refused:
        tenant, _, rest = item.partition(" batch ")
        index = int(rest.split(":", 1)[0])
        out.append(workload.plan(tenant).batches[index])
    return out
