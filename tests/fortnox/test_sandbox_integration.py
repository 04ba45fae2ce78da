"""The real client against the sandbox: ASGI in-process, and real HTTP on loopback."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from engine.fortnox.errors import (
    ConsentRevoked,
    LoginExpired,
    UnknownOutcome,
    WarehouseModuleActive,
)
from engine.fortnox.models import Customer, Voucher, VoucherRow
from engine.fortnox.observability import RecordingMetrics
from engine.fortnox.resources import Bookkeeping, Customers, Settings
from engine.fortnox.stock import Stock, StockMode
from engine.fortnox.tokens import Ended
from engine.fortnox.topics_feed import MemoryOffsetStore, TopicEvent, TopicsFeed
from engine.secrets import Secret, SecretBox
from tests.fortnox.sandbox_env import asgi_sandbox, http_sandbox, serve

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def token_grants(counters: dict[str, object]) -> int:
    by_route = counters.get("by_route", {})
    assert isinstance(by_route, dict)
    return int(by_route.get("POST /oauth-v1/token", 0))


async def test_refresh_race_between_two_clients_sharing_sqlite(
    tmp_path: Path, box: SecretBox
) -> None:
    async with asgi_sandbox() as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        a = env.client(store, owner="worker-a")
        b = env.client(store, owner="worker-b")
        await asyncio.gather(Settings(a).company_information(), Settings(b).company_information())
        before = token_grants(await env.counters())
        await env.fault("expire-tokens", tenant_id=env.tenant_id)
        results = await asyncio.gather(
            *(Settings(c).company_information() for c in (a, b, a, b, a, b))
        )
        assert {r.database_number for r in results} == {env.tenant_id}
        assert token_grants(await env.counters()) - before == 1  # one refresh, no invalid_grant
        stored = await store.load("shop-1")
        assert stored is not None and not stored.login_expired
        # The other worker adopts the stored tokens; the old refresh token is used up.
        assert (await env.counters())["by_status"].get("400", 0) == 0


async def test_revoked_consent_is_consent_revoked(tmp_path: Path, box: SecretBox) -> None:
    async with asgi_sandbox() as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        client = env.client(store)
        await Settings(client).company_information()
        await env.fault("revoke-consent", tenant_id=env.tenant_id)
        with pytest.raises(LoginExpired) as info:
            await Settings(client).company_information()
        # A refresh token days younger than its 45 days that Fortnox refuses was revoked:
        # the shop is told so, not that its login expired.
        assert isinstance(info.value, ConsentRevoked)
        shop = info.value.shop_error()
        assert shop.kind.value == "consent_revoked" and shop.pauses_tenant
        assert "withdrawn in Fortnox" in shop.message
        stored = await store.load("shop-1")
        assert stored is not None and stored.login_expired and stored.ended is Ended.REVOKED


async def test_429_storm_is_survived_without_hammering(tmp_path: Path, box: SecretBox) -> None:
    async with asgi_sandbox() as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        client = env.client(store)
        client.metrics = metrics = RecordingMetrics()
        await env.fault("rate-limit-storm", seconds=1.5, tenant_id=env.tenant_id)
        results = await asyncio.gather(*(Settings(client).company_information() for _ in range(5)))
        assert len(results) == 5
        # Every 429 paused the whole tenant: far fewer 429s than a retry-per-request storm.
        assert 1 <= metrics.statuses["429"] <= 12
        assert metrics.statuses["200"] == 5


async def test_5xx_is_retried_for_gets(tmp_path: Path, box: SecretBox) -> None:
    async with asgi_sandbox() as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        client = env.client(store)
        await env.fault("errors", status=503, next=2, method="GET")
        info = await Settings(client).company_information()
        assert info.database_number == env.tenant_id
        counts = {(c["path"], c["status"]): c["count"] for c in (await env.counters())["counts"]}
        assert counts[("/3/companyinformation", 503)] == 2
        assert counts[("/3/companyinformation", 200)] == 1


def z_voucher(marker: str, day: date) -> Voucher:
    return Voucher(
        voucher_series="F",
        transaction_date=day,
        description="Z-dagrapport 42, kassa K1",
        comments=marker,
        voucher_rows=[
            VoucherRow(account=1910, debit=Decimal("125.00")),
            VoucherRow(account=3001, credit=Decimal("100.00")),
            VoucherRow(account=2611, credit=Decimal("25.00")),
        ],
    )


async def _post_through_drop(env: object, client: object) -> None:
    from engine.fortnox.client import FortnoxClient
    from tests.fortnox.sandbox_env import SandboxEnv

    assert isinstance(env, SandboxEnv) and isinstance(client, FortnoxClient)
    books = Bookkeeping(client)
    day = date.today()
    voucher = z_voucher("KS:z-42", day)
    year = await books.check_voucher(voucher)
    await env.fault("drop-after-commit", next=1, method="POST", path_prefix="/3/vouchers")
    with pytest.raises(UnknownOutcome) as info:
        await books.create_voucher(voucher, year.id)
    assert info.value.payload["Voucher"]["Comments"] == "KS:z-42"
    # Look before retrying: the write did commit, so it must not be posted again.
    found = await books.find_vouchers_by_marker("F", year.id, "KS:z-42", transaction_date=day)
    assert len(found) == 1
    posts = (await env.counters())["by_route"].get("POST /3/vouchers")
    assert posts == 1


async def test_dropped_connection_after_committed_voucher_asgi(
    tmp_path: Path, box: SecretBox
) -> None:
    async with asgi_sandbox() as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        await _post_through_drop(env, env.client(store))


async def test_dropped_connection_after_committed_voucher_real_http(
    tmp_path: Path, box: SecretBox
) -> None:
    async with http_sandbox() as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        client = env.client(store)
        await _post_through_drop(env, client)
        await client.aclose()


async def test_warehouse_detection_and_stock_modes(tmp_path: Path, box: SecretBox) -> None:
    async with asgi_sandbox() as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        client = env.client(store)
        articles = (await env.dump("articles"))["articles"]
        stock_article = next(a for a in articles if a.get("StockGoods"))
        number = stock_article["ArticleNumber"]

        plain = Stock(client)
        assert await plain.mode() is StockMode.ARTICLE_QUANTITY
        read = await plain.read_quantity(number)
        result = await plain.write_quantity(number, lambda q: q - 2)
        assert (result.read, result.written) == (read, read - 2)
        assert await plain.read_quantity(number) == read - 2

        await env.patch_tenant(warehouse=True)
        refused = Stock(client)
        assert await refused.mode() is StockMode.WAREHOUSE_REFUSED
        with pytest.raises(WarehouseModuleActive):
            await refused.write_quantity(number, Decimal(1))
        # A stale "not active" belief is caught when Fortnox refuses the absolute write.
        with pytest.raises(WarehouseModuleActive):
            await plain.write_quantity(number, Decimal(1))

        documents = Stock(client, documents_enabled=True)
        before = await documents.read_quantity(number)
        for _ in range(2):  # a repeated command moves stock once
            await documents.move("cmd-7", {number: Decimal(-3)}, day=date.today())
        assert await documents.read_quantity(number) == before - 3
        balances = await documents.balances([number])
        assert [(b.item_id, b.in_stock) for b in balances] == [(number, before - 3)]


async def test_customer_number_reuse_is_exists(tmp_path: Path, box: SecretBox) -> None:
    async with asgi_sandbox() as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        customers = Customers(env.client(store))
        first = await customers.create(Customer(customer_number="K-900", name="Kund"))
        again = await customers.create(Customer(customer_number="K-900", name="Kund"))
        assert first.customer_number == again.customer_number == "K-900"


async def test_topics_feed_end_to_end(tmp_path: Path, box: SecretBox) -> None:
    async with http_sandbox() as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        manager = env.manager(store)
        offsets = MemoryOffsetStore()
        seen: list[TopicEvent] = []
        got = asyncio.Event()

        async def on_event(event: TopicEvent) -> None:
            seen.append(event)
            if len([e for e in seen if e.topic == "customers"]) >= 2:
                got.set()

        async def tokens() -> dict[str, Secret]:
            return {"shop-1": await manager.access_token("shop-1")}

        def feed() -> TopicsFeed:
            return TopicsFeed(
                client_secret=Secret(env.client_secret),
                tokens=tokens,
                offsets=offsets,
                on_event=on_event,
                topics=["customers"],
                url=env.base_url.replace("http://", "ws://") + "/topics-v1",
                backoff_base=0.05,
            )

        first = feed()
        task = asyncio.create_task(first.run())
        await asyncio.wait_for(first.subscribed.wait(), 10)
        await env.fault("feed-duplicates", next=5)
        customers = Customers(env.client(store))
        for n in ("E-1", "E-2"):
            await customers.create(Customer(customer_number=n, name=f"Event {n}"))
        await asyncio.wait_for(got.wait(), 10)
        await first.stop()
        await asyncio.wait_for(task, 5)
        assert [e.entity_id for e in seen] == ["E-1", "E-2"]
        assert all(e.tenant == "shop-1" and e.type == "customer-created-v1" for e in seen)
        assert first.stats.duplicates >= 1
        assert "customers" in offsets.offsets

        # Restart from the persisted offset: the last event is replayed by the feed and
        # de-duplicated; only the new one reaches the callback.
        second = feed()
        task = asyncio.create_task(second.run())
        await asyncio.wait_for(second.subscribed.wait(), 10)
        await customers.create(Customer(customer_number="E-3", name="Event E-3"))
        for _ in range(200):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.02)
        await second.stop()
        await asyncio.wait_for(task, 5)
        assert [e.entity_id for e in seen] == ["E-1", "E-2", "E-3"]
        assert second.stats.duplicates >= 1


def test_serve_helper_is_loopback_only() -> None:
    from sandbox.fortnox.app import create_app

    with serve(create_app()) as url:
        assert url.startswith("http://127.0.0.1:")


async def test_refresh_race_between_two_processes(tmp_path: Path, box: SecretBox) -> None:
    import os
    import sys

    async with http_sandbox() as env:
        db = tmp_path / "tokens.sqlite"
        await env.sqlite_store(db, box)
        before = token_grants(await env.counters())
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.fortnox.refresh_worker",
                env.base_url,
                str(db),
                env.client_id,
                env.client_secret,
                f"process-{i}",
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ},
            )
            for i in range(2)
        ]
        for _ in range(600):  # both processes have read the (soon rejected) tokens
            if all((tmp_path / f"tokens.sqlite.ready-process-{i}").exists() for i in range(2)):
                break
            await asyncio.sleep(0.05)
        (tmp_path / "tokens.sqlite.go").touch()
        outputs = [await asyncio.wait_for(p.communicate(), 30) for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        hashes = {out.decode().strip().splitlines()[-1] for out, _ in outputs}
        assert len(hashes) == 1  # both ended with the same, single new access token
        assert token_grants(await env.counters()) - before == 1


async def test_resources_against_the_sandbox(tmp_path: Path, box: SecretBox) -> None:
    from datetime import timedelta

    from engine.fortnox.api import FortnoxApi
    from engine.fortnox.limiter import SlidingWindowLimiter
    from engine.fortnox.models import Article, Order, OrderRow
    from engine.fortnox.polling import PollCursor

    async with asgi_sandbox() as env:
        await env.admin.put("/_sandbox/ratelimit", json={"enabled": False})
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        api = FortnoxApi(env.client(store, limiter=SlidingWindowLimiter(limit=10_000)))
        today = date.today()

        company = await api.settings.company_information()
        assert company.database_number == env.tenant_id
        terms = await api.settings.terms_of_payments()
        assert terms and await api.settings.get_terms_of_payment(terms[0].code or "") is not None
        assert await api.settings.get_terms_of_payment("NOPE") is None

        year = await api.bookkeeping.financial_year_for(today)
        assert year is not None and year.id is not None and year.contains(today)
        assert len(await api.bookkeeping.financial_years()) == 2
        accounts = [a async for a in api.bookkeeping.accounts(year.id)]
        assert any(a.number == 1910 for a in accounts)
        assert (await api.bookkeeping.get_account(3900, year.id)).active is False  # type: ignore[union-attr]
        series = {s.code: s for s in await api.bookkeeping.voucher_series(year.id)}
        assert series["F"].manual is True
        centres = {c.code: c for c in await api.bookkeeping.cost_centers()}
        assert centres["999"].active is False
        locked = await api.bookkeeping.locked_period()
        assert locked.end_date is not None and locked.end_date < today

        created = await api.bookkeeping.create_voucher(z_voucher("KS:z-1", today), year.id)
        assert created.voucher_number is not None and created.year == year.id
        fetched = await api.bookkeeping.get_voucher("F", created.voucher_number, year.id)
        assert fetched.comments == "KS:z-1" and len(fetched.voucher_rows or []) == 3
        listed = [v async for v in api.bookkeeping.vouchers(year.id)]
        assert any(v.voucher_number == created.voucher_number for v in listed)
        sie = await api.files.sie(4, year.id)
        assert sie.startswith(b"#FLAGGA") and b"#VER" in sie
        assert await api.files.voucher_file_connections(voucher_series="F") == []

        lists = await api.prices.price_lists()
        assert {p.code for p in lists} >= {"A", "B"}
        article = await api.articles.create(
            Article(article_number="KS-1", description="Kassasync test")
        )
        assert article.article_number == "KS-1"
        await api.prices.set_price("B", "KS-1", Decimal("42.50"))
        price = await api.prices.get_price("B", "KS-1")
        assert price is not None and price.price == Decimal("42.5")
        await api.prices.set_price("B", "KS-1", Decimal("40"))
        assert (await api.prices.get_price("B", "KS-1")).price == Decimal(40)  # type: ignore[union-attr]

        customer = await api.customers.create(Customer(name="Order Kund"))
        assert customer.customer_number
        order = Order(
            customer_number=customer.customer_number,
            order_rows=[OrderRow(article_number="KS-1", ordered_quantity=Decimal(2))],
        )
        first = await api.orders.ensure(order, "TILL-INV-1")
        second = await api.orders.ensure(order, "TILL-INV-1")
        assert first.created and not second.created
        assert first.order.document_number == second.order.document_number
        assert await api.orders.find_by_reference("TILL-INV-") == []

        payments = api.payments.poller(overlap=timedelta(minutes=5))
        batch = await payments.poll(None)
        assert batch.changes
        again = await payments.poll(PollCursor.from_json(batch.next_cursor.to_json()))
        assert again.changes == [] and again.duplicates == again.fetched
        one = batch.changes[0].item
        assert (await api.payments.get(one.number or "")).invoice_number == one.invoice_number
        assert await api.payments.for_invoice(one.invoice_number or 0)
