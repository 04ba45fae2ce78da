"""Seeds: the ``demo`` tenant, empty tenants, and large generated tenants for benchmarks.

The demo tenant ("Exempelbutiken AB") has what a shop's Fortnox company has: financial years for
the previous and the current year (calendar years), a BAS chart of accounts, voucher series A
(manual), B, C and F "Kassa" (manual), cost centre ``100`` (and an inactive ``999``), price lists
A and B, units, terms of payment, customers, ~50 articles with EANs (one hidden with ``#E#``,
one pair sharing an EAN), invoices with booked payments, and a locked period up to 30 June of
the previous year. Everything is listed in docs/sandbox.md.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sandbox.fortnox.auth import issue_tokens
from sandbox.fortnox.resources import articles as article_rules
from sandbox.fortnox.resources import customers as customer_rules
from sandbox.fortnox.resources.bookkeeping import account_defaults, create_financial_year
from sandbox.fortnox.resources.invoices import bookkeep_payment, create_invoice, create_payment
from sandbox.fortnox.resources.registers import COSTCENTERS, PRICELISTS, TERMS, UNITS, create_entry
from sandbox.fortnox.resources.vouchers import create_voucher
from sandbox.fortnox.state import ALL_SCOPES, OAuthClient, SandboxState, Tenant

DEMO_TENANT_ID = 1_234_567
DEMO_CLIENT_ID = "kassasync-demo"

#: (number, description, SRU, cost centre setting, active)
CHART: list[tuple[int, str, int | None, str, bool]] = [
    (1460, "Lager av handelsvaror", 7243, "ALLOWED", True),
    (1510, "Kundfordringar", 7251, "ALLOWED", True),
    (1580, "Fordringar för kontokort och kuponger", 7251, "ALLOWED", True),
    (1910, "Kassa", 7281, "ALLOWED", True),
    (1920, "PlusGiro", 7281, "ALLOWED", True),
    (1930, "Företagskonto/checkkonto/affärskonto", 7281, "ALLOWED", True),
    (2081, "Aktiekapital", 7301, "ALLOWED", True),
    (2091, "Balanserad vinst eller förlust", 7302, "ALLOWED", True),
    (2421, "Ej inlösta presentkort", 7369, "ALLOWED", True),
    (2440, "Leverantörsskulder", 7365, "ALLOWED", True),
    (2611, "Utgående moms på försäljning inom Sverige, 25 %", 7369, "ALLOWED", True),
    (2621, "Utgående moms på försäljning inom Sverige, 12 %", 7369, "ALLOWED", True),
    (2631, "Utgående moms på försäljning inom Sverige, 6 %", 7369, "ALLOWED", True),
    (2641, "Debiterad ingående moms", 7369, "ALLOWED", True),
    (2650, "Redovisningskonto för moms", 7369, "NOTALLOWED", True),
    (2890, "Övriga kortfristiga skulder", 7369, "ALLOWED", True),
    (3001, "Försäljning inom Sverige, 25 % moms", 7410, "ALLOWED", True),
    (3002, "Försäljning inom Sverige, 12 % moms", 7410, "ALLOWED", True),
    (3003, "Försäljning inom Sverige, 6 % moms", 7410, "ALLOWED", True),
    (3004, "Försäljning inom Sverige, momsfri", 7410, "ALLOWED", True),
    (3105, "Försäljning varor till land utanför EU", 7410, "ALLOWED", True),
    (3106, "Försäljning varor till annat EU-land, momspliktig", 7410, "ALLOWED", True),
    (3108, "Försäljning varor till annat EU-land, momsfri", 7410, "ALLOWED", True),
    (3740, "Öres- och kronutjämning", 7410, "ALLOWED", True),
    (3900, "Övriga rörelseintäkter (används ej)", 7413, "ALLOWED", False),
    (4000, "Inköp av varor från Sverige", 7512, "ALLOWED", True),
    (5010, "Lokalhyra", 7513, "MANDATORY", True),
    (6570, "Bankkostnader", 7513, "ALLOWED", True),
    (7010, "Löner till kollektivanställda", 7514, "ALLOWED", True),
]
OPENING_BALANCES = {1460: 80000.0, 1910: 5000.0, 1930: 150000.0, 2081: -50000.0, 2091: -185000.0}
SERIES = [
    ("A", "Redovisning", True),
    ("B", "Kundfakturor", False),
    ("C", "Inbetalningar", False),
    ("F", "Kassa", True),
]
UNIT_ROWS = [
    ("st", "Styck", "pcs"),
    ("kg", "Kilogram", "kg"),
    ("l", "Liter", "l"),
    ("m", "Meter", "m"),
    ("h", "Timme", "h"),
    ("förp", "Förpackning", "pkg"),
]
TERM_ROWS = [("0", "Kontant"), ("10", "10 dagar netto"), ("30", "30 dagar netto")]
CUSTOMER_ROWS: list[dict[str, Any]] = [
    {
        "Name": "Anna Andersson",
        "Type": "PRIVATE",
        "Email": "anna@example.se",
        "City": "Uppsala",
        "ZipCode": "752 20",
        "Address1": "Kungsgatan 12",
        "Phone1": "070-111 22 33",
    },
    {
        "Name": "Byggfirman Bengtsson AB",
        "OrganisationNumber": "556123-4567",
        "Email": "faktura@bengtsson.example.se",
        "City": "Västerås",
        "ZipCode": "721 30",
        "Address1": "Industrivägen 4",
        "TermsOfPayment": "30",
    },
    {
        "Name": "Café Centralen HB",
        "OrganisationNumber": "969654-3210",
        "City": "Stockholm",
        "ZipCode": "111 22",
        "Address1": "Drottninggatan 1",
        "TermsOfPayment": "10",
        "Email": "info@centralen.example.se",
    },
    {
        "Name": "David Dahl",
        "Type": "PRIVATE",
        "City": "Göteborg",
        "ZipCode": "411 01",
        "Email": "david.dahl@example.se",
    },
    {
        "Name": "Eriksson & Ek Redovisning AB",
        "OrganisationNumber": "556987-6543",
        "City": "Malmö",
        "ZipCode": "211 20",
        "Email": "ekonomi@eriksson-ek.example.se",
        "TermsOfPayment": "30",
    },
    {
        "Name": "Föreningen Fika",
        "OrganisationNumber": "802400-1234",
        "City": "Örebro",
        "ZipCode": "702 10",
        "PriceList": "B",
    },
    {
        "Name": "Gustav Gran",
        "Type": "PRIVATE",
        "City": "Lund",
        "ZipCode": "222 20",
        "Active": False,
    },
    {
        "Name": "Norsk Kunde AS",
        "CountryCode": "NO",
        "City": "Oslo",
        "ZipCode": "0150",
        "Currency": "NOK",
        "VATType": "EXPORT",
    },
]

#: (article number, description, VAT %, price in list A excl. VAT, stock, unit, type)
ARTICLE_ROWS: list[tuple[str, str, float, float, float, str, str]] = [
    ("1001", "Kaffe bryggmalet 450 g", 12.0, 69.0, 40, "st", "STOCK"),
    ("1002", "Kaffe hela bönor 1 kg", 12.0, 189.0, 25, "st", "STOCK"),
    ("1003", "Te Earl Grey 100 g", 12.0, 59.0, 30, "st", "STOCK"),
    ("1004", "Chokladkaka mörk 70 %", 12.0, 35.0, 60, "st", "STOCK"),
    ("1005", "Kanelbulle", 12.0, 32.0, 0, "st", "STOCK"),
    ("1006", "Kardemummabulle", 12.0, 34.0, 0, "st", "STOCK"),
    ("1007", "Surdegsbröd", 12.0, 65.0, 12, "st", "STOCK"),
    ("1008", "Havremjölk 1 l", 12.0, 27.0, 48, "st", "STOCK"),
    ("1009", "Honung 350 g", 12.0, 89.0, 18, "st", "STOCK"),
    ("1010", "Hallonsylt 400 g", 12.0, 49.0, 22, "st", "STOCK"),
    ("2001", "Kaffemugg stengods", 25.0, 149.0, 20, "st", "STOCK"),
    ("2002", "Termos 0,5 l", 25.0, 299.0, 10, "st", "STOCK"),
    ("2003", "Kaffefilter nr 4", 25.0, 25.0, 100, "förp", "STOCK"),
    ("2004", "Presskanna 1 l", 25.0, 349.0, 8, "st", "STOCK"),
    ("2005", "Mjölkskummare", 25.0, 199.0, 6, "st", "STOCK"),
    ("2006", "Kökshandduk linne", 25.0, 129.0, 15, "st", "STOCK"),
    ("2007", "Tygkasse med tryck", 25.0, 79.0, 40, "st", "STOCK"),
    ("2008", "Presentkort 200 kr", 0.0, 200.0, 0, "st", "SERVICE"),
    ("2009", "Presentinslagning", 25.0, 20.0, 0, "st", "SERVICE"),
    ("2010", "Kaffeskopa trä", 25.0, 59.0, 25, "st", "STOCK"),
    ("3001", "Tidning Dagens Nyheter", 6.0, 45.0, 10, "st", "STOCK"),
    ("3002", "Pocketbok Deckare", 6.0, 129.0, 14, "st", "STOCK"),
    ("3003", "Kokbok Fika", 6.0, 249.0, 5, "st", "STOCK"),
    ("3004", "Vykort Stockholm", 25.0, 15.0, 200, "st", "STOCK"),
    ("3005", "Almanacka", 6.0, 99.0, 9, "st", "STOCK"),
    ("A100", "Kaffebönor Etiopien 250 g", 12.0, 119.0, 20, "st", "STOCK"),
    ("A1001", "Kaffebönor Colombia 250 g", 12.0, 109.0, 20, "st", "STOCK"),
    ("A1002", "Kaffebönor Brasilien 250 g", 12.0, 99.0, 20, "st", "STOCK"),
    ("A101", "Kaffebönor Kenya 250 g", 12.0, 129.0, 15, "st", "STOCK"),
    ("B-200", "Cantuccini mandel", 12.0, 45.0, 30, "st", "STOCK"),
    ("B-201", "Chokladbiskvi", 12.0, 28.0, 24, "st", "STOCK"),
    ("B-202", "Dammsugare (bakverk)", 12.0, 25.0, 0, "st", "STOCK"),
    ("B-203", "Mazarin", 12.0, 30.0, 0, "st", "STOCK"),
    ("B-204", "Prinsesstårta bit", 12.0, 49.0, 0, "st", "STOCK"),
    ("C-300", "Ost lagrad 12 mån", 12.0, 219.0, 3.75, "kg", "STOCK"),
    ("C-301", "Skinka rökt", 12.0, 289.0, 2.5, "kg", "STOCK"),
    ("C-302", "Oliver gröna", 12.0, 159.0, 4.2, "kg", "STOCK"),
    ("D-400", "Äppelmust 1 l", 12.0, 39.0, 36, "l", "STOCK"),
    ("D-401", "Mineralvatten 33 cl", 12.0, 18.0, 120, "st", "STOCK"),
    ("D-402", "Lemonad fläder", 12.0, 29.0, 48, "st", "STOCK"),
    ("E-500", "Ljus kronljus 8-pack", 25.0, 69.0, 30, "förp", "STOCK"),
    ("E-501", "Servetter 20-pack", 25.0, 35.0, 50, "förp", "STOCK"),
    ("E-502", "Tändstickor", 25.0, 10.0, 80, "förp", "STOCK"),
    ("F-600", "Kaffeabonnemang månad", 25.0, 399.0, 0, "st", "SERVICE"),
    ("F-601", "Barista-kurs", 25.0, 895.0, 0, "h", "SERVICE"),
    ("G-700", "Kaffekvarn elektrisk", 25.0, 1295.0, 4, "st", "STOCK"),
    ("G-701", "Espressokopp 2-pack", 25.0, 179.0, 12, "förp", "STOCK"),
    ("G-702", "Mjölkkanna stål", 25.0, 249.0, 7, "st", "STOCK"),
    ("X-900", "Internt: personalkaffe #E#", 12.0, 0.0, 100, "st", "STOCK"),
    ("X-901", "Kaffemugg stengods (dubblett)", 25.0, 149.0, 5, "st", "STOCK"),
]
#: X-901 shares 2001's EAN: the barcode conflict pair.
EAN_CONFLICT = ("2001", "X-901")


def ean13(body12: str) -> str:
    """An EAN-13 with its check digit."""
    digits = [ord(c) - 48 for c in body12]
    total = sum(digits[0::2]) + 3 * sum(digits[1::2])
    return body12 + str((10 - total % 10) % 10)


@dataclass
class Seeded:
    """What a seed created: the tenant and its integration's credentials."""

    tenant: Tenant
    client: OAuthClient

    def credentials(self, base_url: str) -> dict[str, Any]:
        return {
            "base_url": base_url,
            "client_id": self.client.client_id,
            "client_secret": self.client.client_secret,
            "tenant_id": self.tenant.id,
        }


def add_client_for(
    state: SandboxState,
    tenant: Tenant,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    scopes: frozenset[str] = ALL_SCOPES,
    service_consent: bool = True,
    redirect_uris: list[str] | None = None,
    allow_loopback_redirects: bool = True,
) -> OAuthClient:
    """Register an integration for ``tenant`` and record the tenant's consent to it."""
    client = state.clients.get(client_id or "")
    if client is None:
        client = state.add_client(
            client_id,
            client_secret,
            scopes=frozenset(scopes),
            default_tenant=tenant.id,
            redirect_uris=redirect_uris or ["http://127.0.0.1/callback"],
            allow_loopback_redirects=allow_loopback_redirects,
        )
    state.grant_consent(client.client_id, tenant.id, scopes, service=service_consent)
    return client


def mint_token(state: SandboxState, tenant: Tenant, client: OAuthClient) -> dict[str, Any]:
    """Tokens for ``client`` at ``tenant`` without the OAuth dance (tests, benchmarks)."""
    consent = state.consents[(client.client_id, tenant.id)]
    return issue_tokens(state, consent)


def setup_books(tenant: Tenant, *, years: tuple[int, ...]) -> None:
    """Calendar financial years with the chart of accounts and voucher series."""
    for year in sorted(years):
        fy_id = create_financial_year(
            tenant, {"FromDate": f"{year}-01-01", "ToDate": f"{year}-12-31"}
        )
        accounts = tenant.accounts[fy_id]
        if len(accounts):
            continue
        for number, name, sru, cc_setting, active in CHART:
            data = account_defaults(number, fy_id)
            opening = OPENING_BALANCES.get(number, 0.0)
            data.update(
                {
                    "Description": name,
                    "SRU": sru,
                    "CostCenterSettings": cc_setting,
                    "Active": active,
                    "BalanceBroughtForward": opening,
                    "BalanceCarriedForward": opening,
                }
            )
            accounts.insert(str(number), data, now=tenant.now())
        for code, name, manual in SERIES:
            tenant.voucherseries[fy_id].insert(
                code,
                {
                    "Approver": None,
                    "Code": code,
                    "Description": name,
                    "Manual": manual,
                    "NextVoucherNumber": 1,
                    "Year": fy_id,
                },
                now=tenant.now(),
            )


def setup_registers(tenant: Tenant) -> None:
    for code, desc, english in UNIT_ROWS:
        create_entry(UNITS, tenant, {"Code": code, "Description": desc, "CodeEnglish": english})
    create_entry(PRICELISTS, tenant, {"Code": "A", "Description": "Standard"})
    create_entry(PRICELISTS, tenant, {"Code": "B", "Description": "Återförsäljare"})
    for code, desc in TERM_ROWS:
        create_entry(TERMS, tenant, {"Code": code, "Description": desc})
    create_entry(COSTCENTERS, tenant, {"Code": "100", "Description": "Butik City"})
    create_entry(
        COSTCENTERS, tenant, {"Code": "999", "Description": "Nedlagd butik", "Active": False}
    )


def _price(tenant: Tenant, pricelist: str, article: str, price: float) -> None:
    from sandbox.fortnox.resources.prices import set_price

    rows = tenant.prices.get((pricelist, article), {})
    set_price(tenant, pricelist, article, 0.0, {"Price": price}, create=0.0 not in rows)


def seed_demo(
    state: SandboxState,
    *,
    tenant_id: int | None = DEMO_TENANT_ID,
    client_id: str = DEMO_CLIENT_ID,
    client_secret: str | None = None,
    scopes: frozenset[str] = ALL_SCOPES,
    service_consent: bool = True,
    redirect_uris: list[str] | None = None,
    allow_loopback_redirects: bool = True,
) -> Seeded:
    """The ``demo`` tenant (see the module doc) and its integration's consent."""
    tenant = state.add_tenant(
        tenant_id, company_name="Exempelbutiken AB", organisation_number="556677-8899"
    )
    tenant.company.update(
        {
            "Address": "Storgatan 1",
            "ZipCode": "111 22",
            "City": "Stockholm",
            "Email": "butik@exempelbutiken.example.se",
        }
    )
    today = tenant.today()
    setup_books(tenant, years=(today.year - 1, today.year))
    setup_registers(tenant)
    for row in CUSTOMER_ROWS:
        customer_rules.create_customer(tenant, dict(row))
    for i, (number, desc, vat, price, stock, unit, kind) in enumerate(ARTICLE_ROWS):
        ean = ean13(f"735000{i + 1:06d}") if kind == "STOCK" else ""
        if number == EAN_CONFLICT[1]:
            ean = tenant.articles.get(EAN_CONFLICT[0]).data["EAN"]  # type: ignore[union-attr]
        article_rules.create_article(
            tenant,
            {
                "ArticleNumber": number,
                "Description": desc,
                "VAT": vat,
                "EAN": ean,
                "Unit": unit,
                "Type": kind,
                "StockGoods": kind == "STOCK",
                "QuantityInStock": float(stock),
                "PurchasePrice": round(price * 0.45, 2),
                "WebshopArticle": i % 3 == 0,
            },
            actor="user",
        )
        _price(tenant, "A", number, price)
        _price(tenant, "B", number, round(price * 0.8, 2))
    _demo_invoices(tenant, today)
    prev = tenant.fy_for_date(date(today.year - 1, 6, 1))
    if prev is not None:
        create_voucher(
            tenant,
            {
                "Description": "Z-dagrapport 1, kassa K1",
                "TransactionDate": f"{today.year - 1}-09-15",
                "VoucherSeries": "F",
                "VoucherRows": [
                    {"Account": 1910, "Debit": 1250.0},
                    {"Account": 3001, "Credit": 1000.0, "CostCenter": "100"},
                    {"Account": 2611, "Credit": 250.0},
                ],
            },
            {"financialyear": str(prev)},
        )
    tenant.locked_until = date(today.year - 1, 6, 30)
    client = add_client_for(
        state,
        tenant,
        client_id=client_id,
        client_secret=client_secret,
        scopes=scopes,
        service_consent=service_consent,
        redirect_uris=redirect_uris,
        allow_loopback_redirects=allow_loopback_redirects,
    )
    return Seeded(tenant, client)


def _demo_invoices(tenant: Tenant, today: date) -> None:
    first = today - timedelta(days=14)
    plans = [
        ("2", [("1002", 2), ("2001", 4)], "full", "Beställning 1001"),
        ("3", [("G-700", 1)], "partial", "Beställning 1002"),
        ("5", [("F-601", 3)], "none", "Kurs"),
    ]
    for customer, rows, paid, ref in plans:
        invoice = create_invoice(
            tenant,
            {
                "CustomerNumber": customer,
                "InvoiceDate": first.isoformat(),
                "ExternalInvoiceReference1": ref,
                "InvoiceRows": [
                    {"ArticleNumber": art, "DeliveredQuantity": qty} for art, qty in rows
                ],
            },
        )
        if paid == "none":
            continue
        total = float(invoice.data["Total"])
        amount = total if paid == "full" else round(total / 2, 2)
        payment = create_payment(
            tenant,
            {"InvoiceNumber": int(invoice.key), "Amount": amount, "PaymentDate": today.isoformat()},
        )
        bookkeep_payment(tenant, payment)


# --- empty and bulk tenants -----------------------------------------------------------------------
def seed_empty(state: SandboxState, *, tenant_id: int | None = None, **company: str) -> Tenant:
    """A tenant with books and registers but no customers, articles or documents."""
    tenant = state.add_tenant(tenant_id, **company)
    today = tenant.today()
    setup_books(tenant, years=(today.year - 1, today.year))
    setup_registers(tenant)
    return tenant


def add_bulk(
    tenant: Tenant, *, articles: int = 0, customers: int = 0, start: int = 100_000
) -> None:
    """``articles`` and ``customers`` generated fast (no validation), for benchmarks.

    Article numbers run from ``start``; each article gets an EAN, a stock level and a price in
    the default price list. 100 000 articles take about two seconds and 200 MB.
    """
    now = tenant.now()
    template = article_rules.defaults("0")
    pricelist = tenant.default_pricelist
    date_text = tenant.today().isoformat()
    unit = "st" if "st" in tenant.units else None

    def article_rows() -> Iterator[tuple[str, dict[str, Any]]]:
        for i in range(articles):
            number = str(start + i)
            price = float(10 + (i * 7) % 990)
            qty = float(i % 50)
            purchase = round(price * 0.4, 2)
            data = dict(template)
            data["ArticleNumber"] = number
            data["Description"] = f"Artikel {number}"
            data["EAN"] = ean13(f"2{start + i:011d}"[-12:])
            data["StockGoods"] = True
            data["QuantityInStock"] = qty
            data["DisposableQuantity"] = qty
            data["PurchasePrice"] = purchase
            data["StockValue"] = round(qty * purchase, 2)
            data["SalesPrice"] = price
            data["Unit"] = unit
            tenant.prices[(pricelist, number)] = {
                0.0: {"Price": price, "Percent": 0.0, "Date": date_text}
            }
            yield number, data

    tenant.articles.bulk_insert(article_rows(), now=now)
    if articles:
        tenant.note_number("article", str(start + articles - 1))
    base = tenant.next_numbers["customer"]
    cities = ("Stockholm", "Göteborg", "Malmö", "Uppsala")

    def customer_rows() -> Iterator[tuple[str, dict[str, Any]]]:
        for i in range(customers):
            number = str(base + i)
            data = customer_rules.defaults(number)
            data["Name"] = f"Kund {number}"
            data["Email"] = f"kund{number}@example.se"
            data["City"] = cities[i % 4]
            data["ZipCode"] = f"{100 + i % 900} {10 + i % 90}"
            tenant.reserved_customer_numbers.add(number)
            yield number, data

    tenant.customers.bulk_insert(customer_rows(), now=now)
    if customers:
        tenant.next_numbers["customer"] = base + customers


def seed_bulk(
    state: SandboxState,
    *,
    articles: int,
    customers: int = 0,
    tenant_id: int | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> Seeded:
    """A large tenant for benchmarks, with an integration that may use it."""
    tenant = seed_empty(state, tenant_id=tenant_id, company_name="Storbutiken AB")
    add_bulk(tenant, articles=articles, customers=customers)
    client = add_client_for(
        state, tenant, client_id=client_id, client_secret=client_secret or secrets.token_urlsafe(24)
    )
    return Seeded(tenant, client)
