"""All sandbox state, in memory: tenants with their registers, OAuth, faults, counters, feed.

A :class:`SandboxState` is used from one event loop (the app's); request handlers mutate it
without awaiting in between, so every request is atomic. Other threads (tests, tooling) should
go through the admin API rather than touch it directly.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from sandbox.fortnox.clock import BusinessClock
from sandbox.fortnox.collection import Collection, Record, SortKey
from sandbox.fortnox.counters import RequestCounters
from sandbox.fortnox.faults import Faults
from sandbox.fortnox.ratelimit import RateLimiter
from sandbox.fortnox.stock_audit import StockAudit
from sandbox.fortnox.topics_feed import TopicsFeed

#: Every scope the sandbox knows (reference/fortnox-api.md §1.3).
ALL_SCOPES: frozenset[str] = frozenset(
    {
        "archive",
        "article",
        "bookkeeping",
        "companyinformation",
        "connectfile",
        "costcenter",
        "currency",
        "customer",
        "inbox",
        "invoice",
        "offer",
        "order",
        "payment",
        "price",
        "print",
        "profile",
        "project",
        "settings",
        "supplier",
        "supplierinvoice",
        "warehouse",
    }
)


@dataclass
class OAuthClient:
    """An integration registered in the (simulated) Developer Portal."""

    client_id: str
    client_secret: str
    name: str = "Sandbox integration"
    redirect_uris: list[str] = field(default_factory=lambda: ["http://127.0.0.1/callback"])
    scopes: frozenset[str] = ALL_SCOPES
    service_accounts: bool = True
    default_tenant: int | None = None
    #: Accept any ``http://127.0.0.1:<port>/...`` or ``http://localhost:<port>/...`` redirect
    #: (RFC 8252 style), so local tools need not pre-register their port.
    allow_loopback_redirects: bool = False

    def redirect_allowed(self, uri: str) -> bool:
        if uri in self.redirect_uris:
            return True
        if not self.allow_loopback_redirects:
            return False
        parts = urlsplit(uri)
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


@dataclass(eq=False)
class Consent:
    """A tenant's approval of a client (``service`` = a service-account consent)."""

    client_id: str
    tenant_id: int
    scopes: frozenset[str]
    service: bool
    created: float
    active: bool = True


@dataclass
class Quirks:
    """Real Fortnox behaviours the sandbox can switch on per tenant."""

    #: Collections whose numeric fields are sent as JSON strings (``"*"`` = all), as seen in
    #: real traffic (``"QuantityInStock": "-8"``, accodeing/fortnox-api#145).
    numbers_as_strings: frozenset[str] = frozenset()
    #: Whether a price change in the default price list at FromQuantity 0 (which changes the
    #: article's read-only SalesPrice) touches the article's lastmodified and emits
    #: ``article-updated-v1``. Fortnox does not document this; see docs/sandbox.md.
    price_change_touches_article: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "numbers_as_strings": sorted(self.numbers_as_strings),
            "price_change_touches_article": self.price_change_touches_article,
        }


@dataclass
class StoredFile:
    """A file in the archive or the inbox."""

    id: str
    name: str
    content: bytes
    content_type: str
    folder: str
    created: float
    archive_id: str = ""
    comments: str | None = None


def voucher_sort_key(key: str) -> SortKey:
    series, _, number = key.partition("/")
    return (series, int(number) if number.isdigit() else 0)


def code_sort_key(key: str) -> SortKey:
    return (key,)


class Tenant:
    """One Fortnox company (a tenant / database)."""

    def __init__(
        self,
        tenant_id: int,
        *,
        clock: BusinessClock,
        feed: TopicsFeed,
        company_name: str = "Sandbox AB",
        organisation_number: str = "556000-0000",
    ) -> None:
        self.id = tenant_id
        self.clock = clock
        self.feed = feed
        self.user_id = f"sandbox-user-{tenant_id}"
        self.company: dict[str, Any] = {
            "CompanyName": company_name,
            "OrganizationNumber": organisation_number,
            "Address": "Storgatan 1",
            "ZipCode": "111 22",
            "City": "Stockholm",
            "CountryCode": "SE",
            "Country": "Sverige",
            "Email": "info@example.se",
            "Phone1": "08-123 456",
            "VATNumber": "SE" + organisation_number.replace("-", "") + "01",
        }
        self.licences: set[str] = set(ALL_SCOPES)
        self.warehouse_active = False
        self.quirks = Quirks()
        self.default_pricelist = "A"
        self.locked_until: date | None = None

        self.customers = Collection("customers")
        self.articles = Collection("articles")
        self.units = Collection("units", sort_key=code_sort_key)
        self.pricelists = Collection("pricelists", sort_key=code_sort_key)
        self.termsofpayments = Collection("termsofpayments")
        self.costcenters = Collection("costcenters", sort_key=code_sort_key)
        self.projects = Collection("projects", sort_key=code_sort_key)
        self.invoices = Collection("invoices")
        self.invoicepayments = Collection("invoicepayments")
        self.orders = Collection("orders")
        self.voucherfileconnections = Collection("voucherfileconnections", sort_key=code_sort_key)
        #: (PriceList, ArticleNumber) -> {FromQuantity: {"Price", "Percent", "Date"}}
        self.prices: dict[tuple[str, str], dict[float, dict[str, Any]]] = {}
        self.financial_years: dict[int, dict[str, Any]] = {}
        self.accounts: dict[int, Collection] = {}
        self.voucherseries: dict[int, Collection] = {}
        self.vouchers: dict[int, Collection] = {}
        self.files: dict[str, StoredFile] = {}

        self.reserved_customer_numbers: set[str] = set()
        self.next_numbers: dict[str, int] = {
            "customer": 1,
            "article": 1,
            "invoice": 1,
            "order": 1,
            "invoicepayment": 1,
        }
        #: warehouse: reserved quantity per article, custom document types and documents
        self.reserved: dict[str, float] = {}
        self.document_types: dict[str, str] = {}
        self.custom_documents: dict[tuple[str, str, str], dict[str, Any]] = {}
        #: Ground truth for benchmarks: what the API's absolute stock writes overwrote.
        self.stock_audit = StockAudit()
        #: Set while a change of several records happens at one instant (:meth:`one_moment`).
        self._moment: float | None = None

    # --- time and events -------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.time()

    def today(self) -> date:
        return self.clock.today()

    def emit(self, topic: str, event_type: str, entity_id: str, **extra: Any) -> None:
        at = self._moment if self._moment is not None else self.clock.time()
        self.feed.publish(topic, event_type, self.id, entity_id, at, **extra)

    @contextmanager
    def one_moment(self) -> Iterator[None]:
        """Everything done inside is one change at one instant, as a server transaction is: its
        feed events carry the same timestamp however long the work takes (a loaded machine made
        a web shop sale's article and invoice events some tens of milliseconds apart)."""
        self._moment = self.clock.time()
        try:
            yield
        finally:
            self._moment = None

    # --- numbering ---------------------------------------------------------------------------
    def take_number(self, kind: str, used: Callable[[str], bool]) -> str:
        """The next free number of ``kind`` (skipping numbers ``used`` says are taken)."""
        n = self.next_numbers[kind]
        while used(str(n)):
            n += 1
        self.next_numbers[kind] = n + 1
        return str(n)

    def note_number(self, kind: str, key: str) -> None:
        """A caller chose number ``key``; keep the automatic series past it."""
        if key.isdigit() and len(key) < 12:
            self.next_numbers[kind] = max(self.next_numbers[kind], int(key) + 1)

    # --- financial years ----------------------------------------------------------------------
    def add_financial_year(self, data: dict[str, Any]) -> int:
        fy_id = max(self.financial_years, default=0) + 1
        data = {"Id": fy_id, **data}
        self.financial_years[fy_id] = data
        self.accounts[fy_id] = Collection(f"accounts/{fy_id}")
        self.voucherseries[fy_id] = Collection(f"voucherseries/{fy_id}", sort_key=code_sort_key)
        self.vouchers[fy_id] = Collection(f"vouchers/{fy_id}", sort_key=voucher_sort_key)
        return fy_id

    def fy_for_date(self, when: date) -> int | None:
        iso = when.isoformat()
        for fy_id, fy in self.financial_years.items():
            if fy["FromDate"] <= iso <= fy["ToDate"]:
                return fy_id
        return None

    def preselected_fy(self) -> int | None:
        """The year Fortnox uses when no ``financialyear`` is given: today's, else the latest."""
        current = self.fy_for_date(self.today())
        if current is not None:
            return current
        if not self.financial_years:
            return None
        return max(self.financial_years, key=lambda i: self.financial_years[i]["FromDate"])

    # --- prices --------------------------------------------------------------------------------
    def sales_price(self, article: str) -> float | None:
        rows = self.prices.get((self.default_pricelist, article))
        if not rows or 0.0 not in rows:
            return None
        price = rows[0.0].get("Price")
        return float(price) if price is not None else None

    # --- views ---------------------------------------------------------------------------------
    def registers(self) -> dict[str, Collection]:
        return {
            "customers": self.customers,
            "articles": self.articles,
            "units": self.units,
            "pricelists": self.pricelists,
            "termsofpayments": self.termsofpayments,
            "costcenters": self.costcenters,
            "projects": self.projects,
            "invoices": self.invoices,
            "invoicepayments": self.invoicepayments,
            "orders": self.orders,
            "voucherfileconnections": self.voucherfileconnections,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "tenant_id": self.id,
            "company_name": self.company["CompanyName"],
            "warehouse_active": self.warehouse_active,
            "licences": sorted(self.licences),
            "counts": {name: len(c) for name, c in self.registers().items()},
            "financial_years": len(self.financial_years),
        }


def dump_records(records: Iterable[Record]) -> list[dict[str, Any]]:
    return [
        {
            **rec.data,
            "_lastmodified": rec.modified,
            **({"_internal": rec.internal} if rec.internal else {}),
        }
        for rec in records
    ]


class SandboxState:
    """The whole sandbox: tenants, OAuth clients and grants, faults, counters, feed."""

    def __init__(
        self,
        *,
        clock: BusinessClock | None = None,
        rate_limit: int = 25,
        rate_window_seconds: float = 5.0,
        jwt_key: bytes | None = None,
    ) -> None:
        self.clock = clock or BusinessClock()
        self.feed = TopicsFeed(self.clock)
        self.tenants: dict[int, Tenant] = {}
        self.clients: dict[str, OAuthClient] = {}
        self.consents: dict[tuple[str, int], Consent] = {}
        self.faults = Faults()
        self.counters = RequestCounters()
        self.rate_limiter = RateLimiter(limit=rate_limit, window_seconds=rate_window_seconds)
        self.jwt_key = jwt_key or secrets.token_bytes(32)
        # OAuth grants (see auth.py)
        self.auth_codes: dict[str, Any] = {}
        self.refresh_tokens: dict[str, Any] = {}
        self.access_tokens: dict[str, Any] = {}
        self._next_tenant_id = 1_000_001

    # --- tenants and clients -----------------------------------------------------------------
    def add_tenant(
        self,
        tenant_id: int | None = None,
        *,
        company_name: str = "Sandbox AB",
        organisation_number: str = "556000-0000",
    ) -> Tenant:
        if tenant_id is None:
            while self._next_tenant_id in self.tenants:
                self._next_tenant_id += 1
            tenant_id = self._next_tenant_id
        if tenant_id in self.tenants:
            raise ValueError(f"tenant {tenant_id} exists")
        tenant = Tenant(
            tenant_id,
            clock=self.clock,
            feed=self.feed,
            company_name=company_name,
            organisation_number=organisation_number,
        )
        self.tenants[tenant_id] = tenant
        return tenant

    def add_client(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        **kwargs: Any,
    ) -> OAuthClient:
        client = OAuthClient(
            client_id=client_id or "sandbox-" + secrets.token_hex(6),
            client_secret=client_secret or secrets.token_urlsafe(24),
            **kwargs,
        )
        self.clients[client.client_id] = client
        return client

    def grant_consent(
        self,
        client_id: str,
        tenant_id: int,
        scopes: Iterable[str],
        *,
        service: bool = False,
    ) -> Consent:
        """Record that ``tenant_id`` approved ``client_id`` (replacing any earlier consent)."""
        old = self.consents.get((client_id, tenant_id))
        if old is not None:
            old.active = False
        consent = Consent(client_id, tenant_id, frozenset(scopes), service, self.clock.time())
        self.consents[(client_id, tenant_id)] = consent
        return consent

    def revoke_consents(self, tenant_id: int, client_id: str | None = None) -> int:
        n = 0
        for (cid, tid), consent in self.consents.items():
            if tid == tenant_id and (client_id is None or cid == client_id) and consent.active:
                consent.active = False
                n += 1
        return n

    def tenant(self, tenant_id: int) -> Tenant:
        return self.tenants[tenant_id]
