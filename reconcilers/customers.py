"""Customers: one master per tenant, and the till id <-> Fortnox CustomerNumber mapping.

Till-as-master: till creations and edits go to Fortnox; Fortnox edits are overwritten (and
reported); a till deletion makes the Fortnox customer inactive (Fortnox keeps invoiced customers);
optionally the existing Fortnox register is imported once, during the first full pass.

Fortnox-as-master: Fortnox creations, edits and deletions go to the till; till edits and deletions
are overwritten (and reported) — except that a customer created in the till is created in Fortnox
so it can be invoiced at once; optionally till customers that are not in Fortnox are deleted.

State: ``cust.till`` per till id (the till's fields, the mapped number, pending work),
``cust.fx`` per CustomerNumber (Fortnox's fields and the mapped till id).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from reconcilers import invoices
from reconcilers.context import TENANT, Ctx
from topics.commands import (
    CreateCustomerData,
    CreateFortnoxCustomer,
    DeactivateCustomerData,
    DeactivateFortnoxCustomer,
    DeleteTillCustomer,
    DeleteTillCustomerData,
    TillCustomerData,
    UpdateCustomerData,
    UpdateFortnoxCustomer,
    UpsertTillCustomer,
)
from topics.fortnox import FortnoxCustomerData, SyncCompletedData
from topics.outcomes import OutcomeData, OutcomeStatus
from topics.settings import CustomerMaster
from topics.till import CustomerFields, CustomerUpsertedData

FLOW = "customers"
TILL = "cust.till"
FX = "cust.fx"
_NUMBER_OK = re.compile(r"^[A-Za-z0-9_+/\-]{1,40}$")


def candidate_number(till_id: str, attempt: int = 0) -> str:
    """The CustomerNumber Kassasync asks for when it creates a till customer in Fortnox.

    Chosen from the till id, so that a retried create finds the customer it made (Fortnox
    reserves used numbers forever); ``attempt`` moves past numbers that belong to others.
    """
    base = f"K{till_id}" if _NUMBER_OK.match(till_id) else ""
    if not base:
        base = "K" + hashlib.blake2b(till_id.encode(), digest_size=6).hexdigest()
    return base if attempt == 0 else f"{base}-{attempt}"


def fortnox_till_id(number: str) -> str:
    """The till id Kassasync gives a customer that came from Fortnox."""
    return f"fortnox-{number}"


def _master(ctx: Ctx) -> CustomerMaster:
    return ctx.settings.customers.master


def _fields(customer: CustomerFields) -> dict[str, Any]:
    return customer.model_dump(mode="json")


# --- till events -------------------------------------------------------------------------------


def on_till_upsert(ctx: Ctx, data: CustomerUpsertedData) -> None:
    if not ctx.settings.customers.enabled:
        return
    till_id = data.till_customer_id
    rec = ctx.txn.get(TILL, till_id) or {"number": None}
    fields = _fields(data.customer)
    if rec.get("fields") == fields:
        return
    rec["fields"] = fields
    ctx.txn.put(TILL, till_id, rec)
    number = rec.get("number")
    if _master(ctx) is CustomerMaster.FORTNOX and number is not None:
        fx = ctx.txn.get(FX, number)
        if fx is not None and fx.get("fields") != fields:
            ctx.report(f"customer:{till_id}", {"kind": "till_edit_overwritten", "number": number})
            ctx.note("customer.till_edit_overwritten", till_customer_id=till_id, number=number)
    ctx.mark_dirty(FLOW, f"t:{till_id}")


def on_till_delete(ctx: Ctx, till_id: str) -> None:
    if not ctx.settings.customers.enabled:
        return
    rec = ctx.txn.get(TILL, till_id)
    if rec is None or rec.get("fields") is None:
        return
    rec["fields"] = None
    ctx.txn.put(TILL, till_id, rec)
    if _master(ctx) is CustomerMaster.FORTNOX and rec.get("number"):
        ctx.report(f"customer:{till_id}", {"kind": "till_delete_overwritten"})
        ctx.note("customer.till_delete_overwritten", till_customer_id=till_id)
    ctx.mark_dirty(FLOW, f"t:{till_id}")


# --- Fortnox changes -----------------------------------------------------------------------------


def on_fortnox_customer(ctx: Ctx, data: FortnoxCustomerData) -> None:
    if not ctx.settings.customers.enabled:
        return
    number = data.customer_number
    fields = _fields(data.customer)
    fx = ctx.txn.get(FX, number) or {"till_id": None}
    fx.pop("deleted", None)
    changed = fx.get("fields") != fields
    fx["fields"] = fields
    fx["pass"] = data.observed.sync_pass
    till_id = fx.get("till_id") or _pending_owner(ctx, number)
    if till_id is None:
        till_id = _adopt(ctx, number, data)
    fx["till_id"] = till_id
    ctx.txn.put(FX, number, fx)
    if till_id is None or not changed:
        return
    rec = ctx.txn.get(TILL, till_id) or {"number": number}
    if rec.get("number") != number:
        rec["number"] = number
        ctx.txn.put(TILL, till_id, rec)
    if rec.get("fields") != fields:
        if _master(ctx) is CustomerMaster.TILL and rec.get("fields") is not None:
            ctx.report(
                f"customer:{till_id}", {"kind": "fortnox_edit_overwritten", "number": number}
            )
            ctx.note("customer.fortnox_edit_overwritten", till_customer_id=till_id, number=number)
        ctx.mark_dirty(FLOW, f"t:{till_id}")


def _pending_owner(ctx: Ctx, number: str) -> str | None:
    owner = ctx.txn.get("cust.pending", number)
    return None if owner is None else str(owner["till_id"])


def _adopt(ctx: Ctx, number: str, data: FortnoxCustomerData) -> str | None:
    """Decide whether a Fortnox customer unknown to the till should be brought into the till."""
    settings = ctx.settings.customers
    if settings.master is CustomerMaster.TILL:
        if not settings.import_fortnox_register or _import_done(ctx):
            ctx.note("customer.fortnox_only_ignored", number=number, reason="the till is master")
            return None
        ctx.note("customer.imported_from_fortnox", number=number)
    till_id = fortnox_till_id(number)
    importing = settings.master is CustomerMaster.TILL
    ctx.txn.put(TILL, till_id, {"number": number, "fields": None, "import": importing})
    return till_id


def _import_done(ctx: Ctx) -> bool:
    return bool((ctx.txn.get(TENANT, "customer_import") or {}).get("done"))


def on_fortnox_deleted(ctx: Ctx, number: str) -> None:
    fx = ctx.txn.get(FX, number)
    if fx is None or fx.get("deleted"):
        return
    fx["deleted"] = True
    ctx.txn.put(FX, number, fx)
    till_id = fx.get("till_id")
    ctx.note("customer.deleted_in_fortnox", number=number, till_customer_id=till_id)
    if till_id is None:
        return
    if _master(ctx) is CustomerMaster.TILL:
        # The till is master: the customer gets a new Fortnox record (the old number is spent).
        rec = ctx.txn.get(TILL, till_id) or {}
        rec["number"] = None
        rec["attempt"] = int(rec.get("attempt", 0)) + 1
        ctx.txn.put(TILL, till_id, rec)
    ctx.mark_dirty(FLOW, f"t:{till_id}")


def on_sync_completed(ctx: Ctx, data: SyncCompletedData) -> None:
    settings = ctx.settings.customers
    if settings.master is CustomerMaster.TILL:
        if settings.import_fortnox_register and not _import_done(ctx):
            ctx.txn.put(TENANT, "customer_import", {"done": True, "pass": data.sync_pass})
            ctx.note("customer.import_completed", sync_pass=data.sync_pass)
        return
    for number, fx in ctx.txn.scan(FX):
        if not fx.get("deleted") and fx.get("pass") != data.sync_pass:
            on_fortnox_deleted(ctx, number)
    if not settings.delete_missing:
        return
    for till_id, rec in ctx.txn.scan(TILL):
        if rec.get("fields") is None or rec.get("number") or rec.get("pending"):
            continue
        ctx.note("customer.missing_in_fortnox", till_customer_id=till_id)
        rec["delete_missing"] = True
        ctx.txn.put(TILL, till_id, rec)
        ctx.mark_dirty(FLOW, f"t:{till_id}")


# --- flush ---------------------------------------------------------------------------------------


def flush(ctx: Ctx, key: str) -> None:
    kind, _, till_id = key.partition(":")
    if kind != "t":
        return
    rec = ctx.txn.get(TILL, till_id)
    if rec is None:
        return
    if _master(ctx) is CustomerMaster.TILL:
        _flush_till_master(ctx, till_id, rec)
    else:
        _flush_fortnox_master(ctx, till_id, rec)


def _create_in_fortnox(ctx: Ctx, till_id: str, rec: dict[str, Any]) -> None:
    if rec.get("pending") or rec.get("fields") is None:
        return
    number = candidate_number(till_id, int(rec.get("attempt", 0)))
    cmd = ctx.command(
        CreateFortnoxCustomer,
        f"customer.create:{till_id}:{rec.get('attempt', 0)}",
        CreateCustomerData(
            till_customer_id=till_id,
            customer_number=number,
            customer=CustomerFields.model_validate(rec["fields"]),
        ),
    )
    rec["pending"] = cmd.id
    ctx.txn.put(TILL, till_id, rec)
    ctx.txn.put("cust.pending", number, {"till_id": till_id})
    _remember(ctx, cmd.id, till_id, cmd.type)


def _flush_till_master(ctx: Ctx, till_id: str, rec: dict[str, Any]) -> None:
    number = rec.get("number")
    fields = rec.get("fields")
    if number is None:
        _create_in_fortnox(ctx, till_id, rec)
        return
    fx = ctx.txn.get(FX, number) or {"till_id": till_id}
    if rec.get("import"):
        # One-off import of the existing Fortnox register; from then on the till owns it.
        if fx.get("fields") is not None and not fx.get("deleted"):
            _send_to_till(ctx, till_id, rec, number, fx["fields"])
        rec["import"] = False
        ctx.txn.put(TILL, till_id, rec)
        return
    if fields is None:
        if fx.get("fields") and fx["fields"].get("active", True) and not fx.get("deleted"):
            cmd = ctx.command(
                DeactivateFortnoxCustomer,
                f"customer.deactivate:{till_id}",
                DeactivateCustomerData(customer_number=number),
            )
            fx["fields"] = {**fx["fields"], "active": False}
            ctx.txn.put(FX, number, fx)
            _remember(ctx, cmd.id, till_id, cmd.type)
        return
    if fx.get("fields") != fields:
        cmd2 = ctx.command(
            UpdateFortnoxCustomer,
            f"customer.update:{till_id}",
            UpdateCustomerData(
                customer_number=number, customer=CustomerFields.model_validate(fields)
            ),
        )
        fx["fields"] = fields
        ctx.txn.put(FX, number, fx)
        _remember(ctx, cmd2.id, till_id, cmd2.type)


def _flush_fortnox_master(ctx: Ctx, till_id: str, rec: dict[str, Any]) -> None:
    number = rec.get("number")
    if number is None:
        if rec.get("delete_missing") and rec.get("fields") is not None:
            _delete_from_till(ctx, till_id, rec, "missing in Fortnox")
        else:
            # The one exception: a customer created in the till is created in Fortnox.
            _create_in_fortnox(ctx, till_id, rec)
        return
    fx = ctx.txn.get(FX, number)
    if fx is None or fx.get("fields") is None:
        return
    if fx.get("deleted"):
        if rec.get("fields") is not None:
            _delete_from_till(ctx, till_id, rec, "deleted in Fortnox")
        return
    if rec.get("fields") != fx["fields"]:
        _send_to_till(ctx, till_id, rec, number, fx["fields"])


def _send_to_till(
    ctx: Ctx, till_id: str, rec: dict[str, Any], number: str, fields: dict[str, Any]
) -> None:
    cmd = ctx.command(
        UpsertTillCustomer,
        f"customer.till:{till_id}",
        TillCustomerData(
            till_customer_id=till_id,
            fortnox_customer_number=number,
            customer=CustomerFields.model_validate(fields),
        ),
    )
    rec["fields"] = fields
    ctx.txn.put(TILL, till_id, rec)
    _remember(ctx, cmd.id, till_id, cmd.type)


def _delete_from_till(ctx: Ctx, till_id: str, rec: dict[str, Any], reason: str) -> None:
    cmd = ctx.command(
        DeleteTillCustomer,
        f"customer.till_delete:{till_id}",
        DeleteTillCustomerData(till_customer_id=till_id, reason=reason),
    )
    rec["fields"] = None
    rec.pop("delete_missing", None)
    ctx.txn.put(TILL, till_id, rec)
    _remember(ctx, cmd.id, till_id, cmd.type)


def _remember(ctx: Ctx, command_id: str, till_id: str, command_type: str) -> None:
    ctx.txn.put("cmd", command_id, {"flow": FLOW, "key": till_id, "type": command_type})


# --- outcomes ------------------------------------------------------------------------------


def on_outcome(ctx: Ctx, till_id: str, command_type: str, outcome: OutcomeData) -> None:
    rec = ctx.txn.get(TILL, till_id)
    if rec is None:
        return
    if command_type == "fortnox.customer.create":
        if rec.get("pending") != outcome.command_id:
            return
        if outcome.status is OutcomeStatus.DONE:
            number = outcome.result.get("customer_number") or candidate_number(
                till_id, int(rec.get("attempt", 0))
            )
            rec.pop("pending", None)
            rec.pop("error", None)
            rec["number"] = number
            ctx.txn.put(TILL, till_id, rec)
            fx = ctx.txn.get(FX, number) or {}
            ctx.txn.put(FX, number, {**fx, "till_id": till_id, "fields": rec.get("fields")})
            ctx.note("customer.created_in_fortnox", till_customer_id=till_id, number=number)
            invoices.on_customer_ready(ctx, till_id, number)
            ctx.mark_dirty(FLOW, f"t:{till_id}")
        elif outcome.status in (OutcomeStatus.REJECTED, OutcomeStatus.SKIPPED):
            rec.pop("pending", None)
            rec["error"] = outcome.error.model_dump(mode="json") if outcome.error else None
            ctx.txn.put(TILL, till_id, rec)
            invoices.on_customer_failed(ctx, till_id, outcome)
    elif outcome.status is OutcomeStatus.REJECTED:
        ctx.report(
            f"customer:{till_id}",
            {"kind": "write_rejected", "command": command_type, "error": _error(outcome)},
        )


def _error(outcome: OutcomeData) -> str:
    return outcome.error.message if outcome.error else outcome.status.value


def retry(ctx: Ctx, till_id: str) -> None:
    rec = ctx.txn.get(TILL, till_id)
    if rec is not None:
        rec.pop("error", None)
        ctx.txn.put(TILL, till_id, rec)
        ctx.mark_dirty(FLOW, f"t:{till_id}")


def mapping(ctx: Ctx, till_id: str) -> str | None:
    rec = ctx.txn.get(TILL, till_id)
    return None if rec is None else rec.get("number")


def ensure_in_fortnox(ctx: Ctx, till_id: str) -> bool:
    """Make sure a till customer is (or is being) created in Fortnox; False if unknown."""
    rec = ctx.txn.get(TILL, till_id)
    if rec is None or rec.get("fields") is None:
        return False
    if rec.get("number") is None and not rec.get("pending"):
        ctx.mark_dirty(FLOW, f"t:{till_id}")
    return True
