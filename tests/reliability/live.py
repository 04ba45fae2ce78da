"""The embedded engine running in this process against the chaos harness's World (the Fortnox
sandbox with one company per tenant, one simulated till per tenant, all on loopback HTTP), with
the chaos workload's tills and Fortnox users, fault injection through the sandbox's admin API,
and the ops API behind the admin token.

Fortnox's window (25 requests per 5 s) is scaled to 25 per second on both sides, as in
tests/scenarios, so a fault scenario takes seconds.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import httpx

from chaos import compare
from chaos.compare import Figures, TenantState
from chaos.processes import free_port
from chaos.run import TillSender
from chaos.workload import TenantPlan, Workload, generate
from chaos.world import World
from engine.embedded.runtime import EmbeddedEngine
from engine.secrets import SecretBox, generate_key
from tests.scenarios.harness import FAST_TIMING, WINDOW

ADMIN_TOKEN = "reliability-admin-token-0123456789"


class Live:
    def __init__(self, data: Path, *, tenants: int = 2, seed: int = 7, scale: int = 1) -> None:
        self.data = data
        self.workload: Workload = generate(seed, tenants, scale)
        self.world = World(self.workload.tenants, rate_window=WINDOW)
        self.key = generate_key()
        self.box = SecretBox(self.key)
        self.till = TillSender(self.workload, random.Random(seed))
        self.keys: dict[str, str] = {}
        self.stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Live:
        await self.world.start()
        self.port = free_port()
        self.engine = EmbeddedEngine(
            self.data,
            self.box,
            http_port=self.port,
            timing=FAST_TIMING,
            admin_token=ADMIN_TOKEN,
        )
        for plan in self.workload.plans:
            key = self.engine.tenants.upsert(self.world.config(plan.tenant, plan.settings()))
            assert key is not None
            self.keys[plan.tenant] = key
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.AsyncClient(timeout=30)
        self._task = asyncio.create_task(self.engine.run(self.stop))
        for _ in range(200):
            try:
                if (await self.http.get(f"{self.url}/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.http.aclose()
        await self.world.stop()
        self.engine.db.close()

    # -- the workload ---------------------------------------------------------------------------

    def plan(self, tenant: str) -> TenantPlan:
        return self.workload.plan(tenant)

    async def send(self, tenant: str, batches: slice = slice(None), pace: float = 0.05) -> None:
        """Send (part of) a tenant's till batches, with its Fortnox-side actions."""
        await self.till.send(
            self.world,
            self.http,
            self.plan(tenant),
            f"{self.url}/v1/tenants/{tenant}/events",
            self.keys[tenant],
            pace,
            batches,
        )

    async def send_all(self, batches: slice = slice(None)) -> None:
        await asyncio.gather(*(self.send(t, batches) for t in self.workload.tenants))

    # -- Fortnox's faults -----------------------------------------------------------------------

    async def fault(self, kind: str, **body: Any) -> dict[str, Any]:
        response = await self.world.admin("POST", f"/faults/{kind}", json=body)
        assert response.status_code < 300, response.text
        return dict(response.json())

    async def faults(self) -> dict[str, Any]:
        return dict((await self.world.admin("GET", "/faults")).json())

    async def clear_faults(self) -> None:
        await self.world.admin("DELETE", "/faults")

    async def counters(self) -> dict[str, Any]:
        return dict((await self.world.admin("GET", "/counters")).json())

    # -- looking -------------------------------------------------------------------------------

    async def ops(self, path: str, token: str | None = ADMIN_TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.http.get(f"{self.url}/ops/api{path}", headers=headers)

    async def states(self, tenants: list[str] | None = None) -> dict[str, TenantState]:
        return {t: await compare.snapshot(self.world, t) for t in tenants or self.workload.tenants}

    async def settle(self, tenants: list[str] | None = None, timeout: float = 120.0) -> Figures:
        """Until the tenants' states are what the workload makes and stay so for three rounds;
        then the figures (duplicates, lost movements, lost events) of those tenants."""
        names = tenants or self.workload.tenants
        part = Workload(self.workload.seed, [self.plan(t) for t in names])
        deadline = time.monotonic() + timeout
        previous: dict[str, TenantState] | None = None
        stable = 0
        while stable < 3:
            for tenant, session in self.engine.sessions.items():
                if tenant in names:
                    session.request_poll()
            await asyncio.sleep(0.7)
            states = await self.states(names)
            same = previous is not None and all(
                states[t].state == previous[t].state
                and states[t].duplicates == previous[t].duplicates
                for t in names
            )
            quiet = not any(self.engine.edge.outbox.depth(t) for t in names)
            ok = same and quiet and compare.converged(part, states)
            stable = stable + 1 if ok else 0
            previous = states
            if time.monotonic() > deadline:
                found = compare.figures(part, states, None, [])
                raise AssertionError(f"did not converge: {found.details[:20]}")
        assert previous is not None
        acked = {t: self.till.acked[t] for t in names}
        unlogged = [
            f"{t}/{i}"
            for t, ids in acked.items()
            for i in ids
            if self.engine.db.conn.execute(
                "SELECT 1 FROM ingest_seen WHERE tenant = ? AND msg_id = ?", (t, i)
            ).fetchone()
            is None
        ]
        return compare.figures(part, previous, None, unlogged)
