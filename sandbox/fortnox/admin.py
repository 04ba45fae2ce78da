"""The sandbox's own API under ``/_sandbox`` (no Fortnox auth): tenants, user edits, clock,
faults, rate limit, counters and the feed. Every endpoint is listed in docs/sandbox.md.

User edits ("as a Fortnox user would") go through the same rules as the API, touch
``lastmodified`` and publish feed events; they may set ``QuantityInStock`` even under Lager
(think of it as stock taking).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.auth import expire_access_tokens, issue_tokens
from sandbox.fortnox.collection import Record
from sandbox.fortnox.faults import Scope
from sandbox.fortnox.listing import json_response
from sandbox.fortnox.payloads import (
    AccountPayload,
    ArticlePayload,
    CostCenterPayload,
    CustomerPayload,
    FinancialYearPayload,
    InvoicePayload,
    InvoicePaymentPayload,
    OrderPayload,
    Payload,
    PriceListPayload,
    PricePayload,
    TermsOfPaymentPayload,
    UnitPayload,
    VoucherPayload,
    VoucherSeriesPayload,
    validate,
)
from sandbox.fortnox.resources import articles, customers, invoices, orders, registers
from sandbox.fortnox.resources.bookkeeping import (
    create_account,
    create_financial_year,
    create_series,
    update_account,
    update_series,
)
from sandbox.fortnox.resources.prices import delete_price, set_price
from sandbox.fortnox.resources.vouchers import create_voucher
from sandbox.fortnox.seed import add_bulk, add_client_for, seed_demo, seed_empty
from sandbox.fortnox.state import ALL_SCOPES, SandboxState, Tenant, dump_records

router = APIRouter(prefix="/_sandbox", tags=["sandbox admin"])


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def _tenant(request: Request, tenant_id: int) -> Tenant:
    tenant = _state(request).tenants.get(tenant_id)
    if tenant is None:
        raise HTTPException(404, f"no tenant {tenant_id}")
    return tenant


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- models ------------------------------------------------------------------------------------
class ClientSpec(_Body):
    client_id: str | None = None
    client_secret: str | None = None
    scopes: list[str] | None = None
    service_account: bool = True
    redirect_uris: list[str] | None = None
    allow_loopback_redirects: bool = True


class TenantSpec(_Body):
    tenant_id: int | None = None
    seed: Literal["empty", "demo"] = "empty"
    company_name: str = "Sandbox AB"
    organisation_number: str = "556000-0000"
    articles: int = Field(0, ge=0, le=1_000_000)
    customers: int = Field(0, ge=0, le=1_000_000)
    warehouse: bool = False
    licences: list[str] | None = None
    clients: list[ClientSpec] = Field(default_factory=lambda: [ClientSpec()])


class QuirksSpec(_Body):
    numbers_as_strings: list[str] | None = None
    price_change_touches_article: bool | None = None


class TenantPatch(_Body):
    warehouse: bool | None = None
    licences: list[str] | None = None
    locked_until: date | None = None
    unlock: bool = False
    company_name: str | None = None
    default_pricelist: str | None = None
    quirks: QuirksSpec | None = None


class TokenRequest(_Body):
    client_id: str


class RevokeRequest(_Body):
    client_id: str | None = None


class ClockAdvance(_Body):
    seconds: float = 0
    minutes: float = 0
    hours: float = 0
    days: float = 0


class ClockSet(_Body):
    now: datetime


class ScopeSpec(_Body):
    tenant_id: int | None = None
    method: str | None = None
    path_prefix: str | None = None

    def scope(self) -> Scope | None:
        if self.tenant_id is None and self.method is None and self.path_prefix is None:
            return None
        return Scope(self.tenant_id, self.method, self.path_prefix)


class LatencySpec(ScopeSpec):
    ms: float = Field(ge=0)
    jitter_ms: float = Field(0, ge=0)


class ErrorSpec(ScopeSpec):
    status: int = Field(500, ge=500, le=599)
    next: int | None = Field(None, ge=0)
    ratio: float = Field(0.0, ge=0, le=1)


class StormSpec(ScopeSpec):
    seconds: float = Field(gt=0)


class DropSpec(ScopeSpec):
    next: int = Field(1, ge=0)


class DuplicateSpec(_Body):
    next: int = Field(0, ge=0)
    ratio: float = Field(0.0, ge=0, le=1)


class TenantRef(_Body):
    tenant_id: int | None = None


class ConsentRevoke(_Body):
    tenant_id: int
    client_id: str | None = None


class RateLimitSpec(_Body):
    limit: int | None = Field(None, ge=1)
    window_seconds: float | None = Field(None, gt=0)
    enabled: bool | None = None


class WebshopSale(_Body):
    article: str
    quantity: float = Field(1.0, gt=0)
    #: Record the sale as an invoice in Fortnox (a web shop integration's usual way), announced
    #: on the feed (``invoice-created-v1``) at the moment the stock moves.
    invoice: bool = False
    #: The invoice's customer; created as a company named "Web shop" when missing.
    customer: str = "WEBSHOP"


# --- health, errors, clock -----------------------------------------------------------------------
@router.get("/health")
async def health(request: Request) -> Response:
    return json_response({"ok": True, "tenants": len(_state(request).tenants)})


@router.get("/errors")
async def error_catalogue() -> Response:
    return json_response(E.catalogue())


def _clock(state: SandboxState) -> dict[str, Any]:
    return {
        "now": state.clock.now().isoformat(),
        "epoch": state.clock.time(),
        "frozen": state.clock.frozen,
    }


@router.get("/clock")
async def get_clock(request: Request) -> Response:
    return json_response(_clock(_state(request)))


@router.post("/clock/advance")
async def advance_clock(request: Request, body: ClockAdvance) -> Response:
    state = _state(request)
    seconds = body.seconds + 60 * body.minutes + 3600 * body.hours + 86400 * body.days
    try:
        state.clock.advance(seconds)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return json_response(_clock(state))


@router.post("/clock/set")
async def set_clock(request: Request, body: ClockSet) -> Response:
    state = _state(request)
    try:
        state.clock.set(body.now)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return json_response(_clock(state))


@router.post("/clock/freeze")
async def freeze_clock(request: Request) -> Response:
    state = _state(request)
    state.clock.freeze()
    return json_response(_clock(state))


@router.post("/clock/unfreeze")
async def unfreeze_clock(request: Request) -> Response:
    state = _state(request)
    state.clock.unfreeze()
    return json_response(_clock(state))


# --- tenants and integrations --------------------------------------------------------------------
def _client_json(state: SandboxState, tenant: Tenant, client_id: str) -> dict[str, Any]:
    client = state.clients[client_id]
    consent = state.consents.get((client_id, tenant.id))
    return {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "scopes": sorted(consent.scopes if consent else client.scopes),
        "service_account": bool(consent and consent.service),
        "consent_active": bool(consent and consent.active),
        "redirect_uris": client.redirect_uris,
    }


def _scopes(spec: ClientSpec) -> frozenset[str]:
    scopes = frozenset(spec.scopes) if spec.scopes is not None else ALL_SCOPES
    unknown = scopes - ALL_SCOPES
    if unknown:
        raise HTTPException(400, f"unknown scopes: {sorted(unknown)}")
    return scopes


def _add_client(state: SandboxState, tenant: Tenant, spec: ClientSpec) -> str:
    scopes = _scopes(spec)
    client = add_client_for(
        state,
        tenant,
        client_id=spec.client_id,
        client_secret=spec.client_secret,
        scopes=scopes,
        service_consent=spec.service_account,
        redirect_uris=spec.redirect_uris,
        allow_loopback_redirects=spec.allow_loopback_redirects,
    )
    return client.client_id


@router.get("/tenants")
async def list_tenants(request: Request) -> Response:
    return json_response([t.summary() for t in _state(request).tenants.values()])


@router.post("/tenants", status_code=201)
async def create_tenant(request: Request, body: TenantSpec) -> Response:
    state = _state(request)
    if body.tenant_id is not None and body.tenant_id in state.tenants:
        raise HTTPException(409, f"tenant {body.tenant_id} exists")
    client_ids: list[str] = []
    if body.seed == "demo":
        first = body.clients[0] if body.clients else ClientSpec()
        seeded = seed_demo(
            state,
            tenant_id=body.tenant_id,
            client_id=first.client_id or f"demo-{len(state.clients) + 1}",
            client_secret=first.client_secret,
            scopes=_scopes(first),
            service_consent=first.service_account,
            redirect_uris=first.redirect_uris,
            allow_loopback_redirects=first.allow_loopback_redirects,
        )
        tenant = seeded.tenant
        client_ids.append(seeded.client.client_id)
        extra = body.clients[1:]
    else:
        tenant = seed_empty(
            state,
            tenant_id=body.tenant_id,
            company_name=body.company_name,
            organisation_number=body.organisation_number,
        )
        extra = body.clients
    if body.articles or body.customers:
        add_bulk(tenant, articles=body.articles, customers=body.customers)
    tenant.warehouse_active = body.warehouse
    if body.licences is not None:
        tenant.licences = set(body.licences)
    for spec in extra:
        client_ids.append(_add_client(state, tenant, spec))
    return json_response(
        {
            "tenant_id": tenant.id,
            "summary": tenant.summary(),
            "clients": [_client_json(state, tenant, cid) for cid in client_ids],
        },
        201,
    )


@router.get("/tenants/{tenant_id}")
async def dump_tenant(request: Request, tenant_id: int) -> Response:
    tenant = _tenant(request, tenant_id)
    state = _state(request)
    wanted = request.query_params.get("registers")
    names = set(wanted.split(",")) if wanted else None
    out: dict[str, Any] = {
        **tenant.summary(),
        "company": tenant.company,
        "quirks": tenant.quirks.as_dict(),
        "default_pricelist": tenant.default_pricelist,
        "locked_until": tenant.locked_until.isoformat() if tenant.locked_until else None,
        "clock": state.clock.now().isoformat(),
        "consents": [
            {
                "client_id": c.client_id,
                "scopes": sorted(c.scopes),
                "service": c.service,
                "active": c.active,
            }
            for (_cid, tid), c in state.consents.items()
            if tid == tenant.id
        ],
    }
    for name, coll in tenant.registers().items():
        if names is None or name in names:
            out[name] = dump_records(coll)
    if names is None or "prices" in names:
        out["prices"] = [
            {"PriceList": pl, "ArticleNumber": art, "FromQuantity": qty, **row}
            for (pl, art), rows in sorted(tenant.prices.items())
            for qty, row in sorted(rows.items())
        ]
    if names is None or "financialyears" in names:
        out["financialyears"] = [
            {
                **fy,
                "accounts": dump_records(tenant.accounts[fy_id]),
                "voucherseries": dump_records(tenant.voucherseries[fy_id]),
                "vouchers": dump_records(tenant.vouchers[fy_id]),
            }
            for fy_id, fy in sorted(tenant.financial_years.items())
        ]
    if names is None or "files" in names:
        out["files"] = [
            {
                "Id": f.id,
                "ArchiveFileId": f.archive_id,
                "Name": f.name,
                "Folder": f.folder,
                "Size": len(f.content),
            }
            for f in tenant.files.values()
        ]
    if names is None or "warehouse" in names:
        out["warehouse"] = {
            "reserved": tenant.reserved,
            "document_types": tenant.document_types,
            "documents": [
                {"category": c, "type": t, **doc}
                for (c, t, _i), doc in sorted(tenant.custom_documents.items())
            ],
        }
    return json_response(out)


@router.delete("/tenants/{tenant_id}", status_code=204)
async def delete_tenant(request: Request, tenant_id: int) -> Response:
    state = _state(request)
    _tenant(request, tenant_id)
    state.revoke_consents(tenant_id)
    del state.tenants[tenant_id]
    return Response(status_code=204)


@router.patch("/tenants/{tenant_id}")
async def patch_tenant(request: Request, tenant_id: int, body: TenantPatch) -> Response:
    tenant = _tenant(request, tenant_id)
    if body.warehouse is not None:
        tenant.warehouse_active = body.warehouse
    if body.licences is not None:
        tenant.licences = set(body.licences)
    if body.unlock:
        tenant.locked_until = None
    elif body.locked_until is not None:
        tenant.locked_until = body.locked_until
    if body.company_name is not None:
        tenant.company["CompanyName"] = body.company_name
    if body.default_pricelist is not None:
        if body.default_pricelist not in tenant.pricelists:
            raise HTTPException(400, f"no price list {body.default_pricelist}")
        tenant.default_pricelist = body.default_pricelist
        for rec in tenant.pricelists:
            tenant.pricelists.invalidate(rec)
        for rec in tenant.articles:
            articles.refresh_sales_price(tenant, rec.key)
    if body.quirks is not None:
        if body.quirks.numbers_as_strings is not None:
            tenant.quirks.numbers_as_strings = frozenset(body.quirks.numbers_as_strings)
            for coll in tenant.registers().values():
                for rec in coll:
                    rec.cache.clear()
        if body.quirks.price_change_touches_article is not None:
            tenant.quirks.price_change_touches_article = body.quirks.price_change_touches_article
    return json_response(
        {
            **tenant.summary(),
            "quirks": tenant.quirks.as_dict(),
            "locked_until": tenant.locked_until.isoformat() if tenant.locked_until else None,
        }
    )


@router.post("/tenants/{tenant_id}/clients", status_code=201)
async def add_client(request: Request, tenant_id: int, body: ClientSpec) -> Response:
    state = _state(request)
    tenant = _tenant(request, tenant_id)
    client_id = _add_client(state, tenant, body)
    return json_response(_client_json(state, tenant, client_id), 201)


@router.post("/tenants/{tenant_id}/tokens")
async def mint_tokens(request: Request, tenant_id: int, body: TokenRequest) -> Response:
    state = _state(request)
    tenant = _tenant(request, tenant_id)
    consent = state.consents.get((body.client_id, tenant.id))
    if consent is None or not consent.active:
        raise HTTPException(400, "no active consent for that client at this tenant")
    return json_response(issue_tokens(state, consent))


@router.post("/tenants/{tenant_id}/revoke-consent")
async def revoke_consent(request: Request, tenant_id: int, body: RevokeRequest) -> Response:
    _tenant(request, tenant_id)
    n = _state(request).revoke_consents(tenant_id, body.client_id)
    return json_response({"revoked": n})


# --- user edits ---------------------------------------------------------------------------------
RECORD_MODELS: dict[str, type[Payload]] = {
    "customers": CustomerPayload,
    "articles": ArticlePayload,
    "units": UnitPayload,
    "pricelists": PriceListPayload,
    "termsofpayments": TermsOfPaymentPayload,
    "costcenters": CostCenterPayload,
    "invoices": InvoicePayload,
    "invoicepayments": InvoicePaymentPayload,
    "orders": OrderPayload,
}


def _fields(register: str, body: Any) -> dict[str, Any]:
    model = RECORD_MODELS.get(register)
    if model is None:
        raise HTTPException(404, f"no register {register}")
    payload = validate(model, body)
    given = payload.given()
    given.pop("@url", None)
    return given


def _record_json(rec: Record) -> dict[str, Any]:
    return {**rec.data, "_lastmodified": rec.modified}


@router.post("/tenants/{tenant_id}/records/{register}", status_code=201)
async def user_create(request: Request, tenant_id: int, register: str) -> Response:
    tenant = _tenant(request, tenant_id)
    given = _fields(register, await request.json())
    rec: Record
    if register == "customers":
        rec = customers.create_customer(tenant, given)
    elif register == "articles":
        rec = articles.create_article(tenant, given, actor="user")
    elif register in registers.REGISTERS:
        rec = registers.create_entry(registers.REGISTERS[register], tenant, given)
    elif register == "invoices":
        rec = invoices.create_invoice(tenant, given)
    elif register == "invoicepayments":
        rec = invoices.bookkeep_payment(tenant, invoices.create_payment(tenant, given))
    else:
        rec = orders.create_order(tenant, given)
    return json_response(_record_json(rec), 201)


def _existing(tenant: Tenant, register: str, key: str) -> Record:
    coll = tenant.registers().get(register)
    rec = coll.get(key) if coll is not None else None
    if rec is None:
        raise HTTPException(404, f"no {register} {key}")
    return rec


@router.patch("/tenants/{tenant_id}/records/{register}/{key}")
async def user_update(request: Request, tenant_id: int, register: str, key: str) -> Response:
    tenant = _tenant(request, tenant_id)
    given = _fields(register, await request.json())
    rec = _existing(tenant, register, key)
    if register == "customers":
        customers.update_customer(tenant, rec, given)
    elif register == "articles":
        articles.update_article(tenant, rec, given, actor="user")
    elif register in registers.REGISTERS:
        registers.update_entry(registers.REGISTERS[register], tenant, rec, given)
    elif register == "invoices":
        invoices.update_invoice(tenant, rec, given)
    elif register == "invoicepayments":
        invoices.update_payment(tenant, rec, given)
    else:
        orders.update_order(tenant, rec, given)
    return json_response(_record_json(rec))


@router.delete("/tenants/{tenant_id}/records/{register}/{key}", status_code=204)
async def user_delete(request: Request, tenant_id: int, register: str, key: str) -> Response:
    tenant = _tenant(request, tenant_id)
    _existing(tenant, register, key)
    if register == "customers":
        customers.delete_customer(tenant, key)
    elif register == "articles":
        articles.delete_article(tenant, key)
    elif register in registers.REGISTERS:
        registers.delete_entry(registers.REGISTERS[register], tenant, key)
    elif register == "invoicepayments":
        invoices.delete_payment(tenant, key, actor="user")
    elif register == "orders":
        orders.cancel_order(tenant, _existing(tenant, register, key))
    else:
        raise HTTPException(400, f"{register} cannot be deleted")
    return Response(status_code=204)


@router.put("/tenants/{tenant_id}/prices/{pricelist}/{article}/{from_quantity}")
async def user_price(
    request: Request, tenant_id: int, pricelist: str, article: str, from_quantity: float
) -> Response:
    tenant = _tenant(request, tenant_id)
    given = validate(PricePayload, await request.json()).given()
    exists = from_quantity in tenant.prices.get((pricelist, article), {})
    row = set_price(tenant, pricelist, article, from_quantity, given, create=not exists)
    return json_response(
        {"PriceList": pricelist, "ArticleNumber": article, "FromQuantity": from_quantity, **row}
    )


@router.delete("/tenants/{tenant_id}/prices/{pricelist}/{article}/{from_quantity}", status_code=204)
async def user_delete_price(
    request: Request, tenant_id: int, pricelist: str, article: str, from_quantity: float
) -> Response:
    delete_price(_tenant(request, tenant_id), pricelist, article, from_quantity)
    return Response(status_code=204)


@router.post("/tenants/{tenant_id}/webshop-sale")
async def webshop_sale(request: Request, tenant_id: int, body: WebshopSale) -> Response:
    tenant = _tenant(request, tenant_id)
    if body.invoice and tenant.customers.get(body.customer) is None:
        customers.create_customer(
            tenant, {"CustomerNumber": body.customer, "Name": "Web shop", "Type": "COMPANY"}
        )
    with tenant.one_moment():
        rec = articles.webshop_sale(tenant, body.article, body.quantity)
        out: dict[str, Any] = {
            "ArticleNumber": rec.key,
            "QuantityInStock": rec.data["QuantityInStock"],
        }
        if body.invoice:
            # The stock moved with the invoice (one step, one moment): Fortnox's feed announces
            # the article's change and the invoice together.
            made = invoices.create_invoice(
                tenant,
                {
                    "CustomerNumber": body.customer,
                    "InvoiceRows": [{"ArticleNumber": rec.key, "DeliveredQuantity": body.quantity}],
                },
            )
            out["InvoiceNumber"] = made.key
    return json_response(out)


@router.get("/tenants/{tenant_id}/stock-audit")
async def stock_audit(request: Request, tenant_id: int) -> Response:
    """The absolute stock writes that overwrote a change the API client had not seen."""
    return json_response(_tenant(request, tenant_id).stock_audit.as_dict())


@router.post("/tenants/{tenant_id}/invoices/{number}/payments", status_code=201)
async def register_payment(request: Request, tenant_id: int, number: str) -> Response:
    tenant = _tenant(request, tenant_id)
    body = await request.json()
    given = validate(InvoicePaymentPayload, {**body, "InvoiceNumber": number}).given()
    rec = invoices.bookkeep_payment(tenant, invoices.create_payment(tenant, given))
    return json_response(_record_json(rec), 201)


@router.post("/tenants/{tenant_id}/financialyears", status_code=201)
async def user_financial_year(request: Request, tenant_id: int) -> Response:
    tenant = _tenant(request, tenant_id)
    given = validate(FinancialYearPayload, await request.json()).given()
    fy_id = create_financial_year(tenant, given)
    return json_response(tenant.financial_years[fy_id], 201)


def _fy(tenant: Tenant, fy_id: int) -> int:
    if fy_id not in tenant.financial_years:
        raise HTTPException(404, f"no financial year {fy_id}")
    return fy_id


@router.post("/tenants/{tenant_id}/financialyears/{fy_id}/accounts", status_code=201)
async def user_account(request: Request, tenant_id: int, fy_id: int) -> Response:
    tenant = _tenant(request, tenant_id)
    given = validate(AccountPayload, await request.json()).given()
    rec = create_account(tenant, _fy(tenant, fy_id), given)
    return json_response(_record_json(rec), 201)


@router.patch("/tenants/{tenant_id}/financialyears/{fy_id}/accounts/{number}")
async def user_update_account(
    request: Request, tenant_id: int, fy_id: int, number: str
) -> Response:
    tenant = _tenant(request, tenant_id)
    year = _fy(tenant, fy_id)
    rec = tenant.accounts[year].get(number)
    if rec is None:
        raise HTTPException(404, f"no account {number}")
    update_account(tenant, year, rec, validate(AccountPayload, await request.json()).given())
    return json_response(_record_json(rec))


@router.post("/tenants/{tenant_id}/financialyears/{fy_id}/voucherseries", status_code=201)
async def user_series(request: Request, tenant_id: int, fy_id: int) -> Response:
    tenant = _tenant(request, tenant_id)
    given = validate(VoucherSeriesPayload, await request.json()).given()
    rec = create_series(tenant, _fy(tenant, fy_id), given)
    return json_response(_record_json(rec), 201)


@router.patch("/tenants/{tenant_id}/financialyears/{fy_id}/voucherseries/{code}")
async def user_update_series(request: Request, tenant_id: int, fy_id: int, code: str) -> Response:
    tenant = _tenant(request, tenant_id)
    year = _fy(tenant, fy_id)
    rec = tenant.voucherseries[year].get(code)
    if rec is None:
        raise HTTPException(404, f"no voucher series {code}")
    update_series(tenant, year, rec, validate(VoucherSeriesPayload, await request.json()).given())
    return json_response(_record_json(rec))


@router.post("/tenants/{tenant_id}/financialyears/{fy_id}/vouchers", status_code=201)
async def user_voucher(request: Request, tenant_id: int, fy_id: int) -> Response:
    tenant = _tenant(request, tenant_id)
    given = validate(VoucherPayload, await request.json()).given()
    rec = create_voucher(tenant, given, {"financialyear": str(_fy(tenant, fy_id))})
    return json_response(_record_json(rec), 201)


# --- faults, rate limit, tokens -------------------------------------------------------------------
@router.get("/faults")
async def get_faults(request: Request) -> Response:
    return json_response(_state(request).faults.as_dict())


@router.delete("/faults")
async def clear_faults(request: Request) -> Response:
    state = _state(request)
    state.faults.clear()
    return json_response(state.faults.as_dict())


@router.post("/faults/latency")
async def fault_latency(request: Request, body: LatencySpec) -> Response:
    state = _state(request)
    state.faults.set_latency(body.ms, body.jitter_ms, body.scope())
    return json_response(state.faults.as_dict())


@router.post("/faults/errors")
async def fault_errors(request: Request, body: ErrorSpec) -> Response:
    state = _state(request)
    if body.next is None and body.ratio <= 0:
        raise HTTPException(400, "give next (a count) or ratio (0..1)")
    state.faults.set_errors(
        status=body.status, next_n=body.next, ratio=body.ratio, scope=body.scope()
    )
    return json_response(state.faults.as_dict())


@router.post("/faults/rate-limit-storm")
async def fault_storm(request: Request, body: StormSpec) -> Response:
    state = _state(request)
    state.faults.set_storm(body.seconds, body.scope())
    return json_response(state.faults.as_dict())


@router.post("/faults/drop-after-commit")
async def fault_drop(request: Request, body: DropSpec) -> Response:
    state = _state(request)
    state.faults.set_drop(body.next, body.scope())
    return json_response(state.faults.as_dict())


@router.post("/faults/feed-duplicates")
async def fault_duplicates(request: Request, body: DuplicateSpec) -> Response:
    state = _state(request)
    state.faults.set_feed_duplicates(next_n=body.next, ratio=body.ratio)
    return json_response(state.faults.as_dict())


@router.post("/faults/expire-tokens")
async def fault_expire_tokens(request: Request, body: TenantRef) -> Response:
    return json_response({"expired": expire_access_tokens(_state(request), body.tenant_id)})


@router.post("/faults/revoke-consent")
async def fault_revoke_consent(request: Request, body: ConsentRevoke) -> Response:
    _tenant(request, body.tenant_id)
    return json_response(
        {"revoked": _state(request).revoke_consents(body.tenant_id, body.client_id)}
    )


@router.get("/ratelimit")
async def get_rate_limit(request: Request) -> Response:
    return json_response(_state(request).rate_limiter.as_dict())


@router.put("/ratelimit")
async def put_rate_limit(request: Request, body: RateLimitSpec) -> Response:
    limiter = _state(request).rate_limiter
    limiter.configure(limit=body.limit, window_seconds=body.window_seconds, enabled=body.enabled)
    return json_response(limiter.as_dict())


# --- counters and feed ----------------------------------------------------------------------------
@router.get("/counters")
async def get_counters(request: Request) -> Response:
    return json_response(_state(request).counters.snapshot())


@router.delete("/counters")
async def reset_counters(request: Request) -> Response:
    state = _state(request)
    state.counters.reset()
    return json_response(state.counters.snapshot())


@router.get("/tenants/{tenant_id}/counters")
async def get_tenant_counters(request: Request, tenant_id: int) -> Response:
    return json_response(_state(request).counters.snapshot(tenant_id)[str(tenant_id)])


@router.delete("/tenants/{tenant_id}/counters")
async def reset_tenant_counters(request: Request, tenant_id: int) -> Response:
    state = _state(request)
    state.counters.reset(tenant_id)
    return json_response(state.counters.snapshot(tenant_id)[str(tenant_id)])


@router.get("/feed")
async def get_feed(request: Request) -> Response:
    q = request.query_params
    tenant = q.get("tenant_id")
    events = _state(request).feed.events(
        q.get("topic"), int(tenant) if tenant else None, int(q.get("limit", "1000"))
    )
    return json_response(events)
