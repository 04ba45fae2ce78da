"""Customers: one master per tenant, and the till id <-> Fortnox CustomerNumber mapping.

Till-as-master
    * Till creations and edits go to Fortnox: a create once, then updates. A till deletion makes
      the Fortnox customer inactive (Fortnox keeps customers that have invoices).
    * Fortnox edits are not taken: the till's fields overwrite them at the next flush, reported
      (``fortnox_edit_overwritten``).
    * A customer deleted in Fortnox (or missing from a completed full pass) that the till still
      has is created again under the next number (the old number is spent): the till is master.
    * Optional one-off import (``import_fortnox_register``): every Fortnox customer seen before or
      during the first full pass completed with the option on is brought into the till once (till
      id ``fortnox-<number>``); from then on the till owns it. Later Fortnox-only customers are
      ignored.

Fortnox-as-master
    * Fortnox creations and edits go to the till (till id ``fortnox-<number>`` for customers
      Fortnox created).
    * Till edits and deletions are not sent: Fortnox's fields overwrite them at the next flush,
      reported (``till_edit_overwritten``, ``till_delete_overwritten``).
    * The one exception: a customer created in the till (it has no Fortnox number yet) is created
      in Fortnox, so it can be invoiced at once. Edits the till makes before Fortnox confirmed the
      creation are overwritten like any other (reported).
    * ``delete_missing``: a till customer that is no longer in Fortnox (deleted there, or missing
      from a completed full pass) is deleted from the till. Without the option the till keeps it,
      reported, and it is not created in Fortnox again.

Both modes
    * The mapping till id <-> CustomerNumber is one-to-one.
    * A customer is created in Fortnox once per Fortnox life: Kassasync chooses the number from
      the till id (skipping numbers that belong to others), so a retried create finds the
      customer it made; only after Fortnox deleted it (till-as-master) is a next number used.
    * A customer's till events apply in the till's order: by their optional ``sequence`` (the
      till's version of the customer), else in the order received; a wall clock never decides.
      An event older than what the till already said (a lower sequence) is recorded, not
      applied, and reported at warning (``till_edit_out_of_order``).
    * Redelivered till events, stale Fortnox records (by ``seq``), repeated deletions and
      repeated outcomes change nothing. Changing the master mode or an option re-evaluates every
      customer.

State: ``cust.till`` per till id (the till's fields, the highest ``till_sequence`` applied, the
mapped number, a create in flight),
``cust.fx`` per CustomerNumber (Fortnox's fields, the mapped till id, deleted, the pass that last
saw it) and ``cust.pending`` per number being created.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from reconcilers import passes
from reconcilers.context import DIRTY, TENANT, Ctx
from reconcilers.events import CustomerFailed, CustomerReady
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
from topics.settings import CustomerMaster, TenantSettings
from topics.till import CustomerDeletedData, CustomerFields, CustomerUpsertedData

FLOW = "customers"
TILL = "cust.till"
FX = "cust.fx"
PENDING = "cust.pending"
RESOURCE = "customers"
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


def _key(till_id: str) -> str:
    return f"t:{till_id}"


def _alive(fx: dict[str, Any] | None) -> bool:
    return fx is not None and not fx.get("deleted") and fx.get("fields") is not None


# --- till events -------------------------------------------------------------------------------


def _till_order(
    ctx: Ctx, rec: dict[str, Any], till_id: str, sequence: int | None, fields: Any
) -> bool:
    """True if the till's event (carrying ``fields``, None for a deletion) is to be applied to
    the customer's record ``rec``; else it is recorded and reported here.

    Till events of one customer are applied in the till's own order: by ``sequence`` when the
    event carries one, else in the order received. A wall clock never decides (a till stamping
    one edit minutes ahead must not turn the next, real edit into a no-op). A redelivery (same
    message id) changes nothing; an event whose sequence is not above the one applied is older
    than what the till already said: recorded (its message id, so a redelivery stays silent)
    and reported for the shop, at warning, unless it says what was applied already.
    """
    if ctx.msg.id in rec.get("till_ids", ()):
        ctx.note("customer.till_event_repeated", till_customer_id=till_id)
        return False
    last = rec.get("till_sequence")
    if sequence is None or last is None or sequence > int(last):
        return True
    ctx.stamp(rec, "till")
    ctx.txn.put(TILL, till_id, rec)
    if sequence == int(last) and rec.get("fields") == fields:
        ctx.note("customer.till_event_repeated", till_customer_id=till_id, sequence=sequence)
        return False
    ctx.report(
        f"customer:{till_id}:order",
        {
            "kind": "till_edit_out_of_order",
            "message_id": ctx.msg.id,
            "sequence": sequence,
            "applied_sequence": int(last),
        },
    )
    ctx.warn(
        "customer.till_edit_out_of_order",
        till_customer_id=till_id,
        sequence=sequence,
        applied_sequence=int(last),
    )
    return False


def _stamp_till(ctx: Ctx, rec: dict[str, Any], sequence: int | None) -> None:
    ctx.stamp(rec, "till")
    if sequence is not None:
        last = rec.get("till_sequence")
        rec["till_sequence"] = sequence if last is None else max(sequence, int(last))


def on_till_upsert(ctx: Ctx, data: CustomerUpsertedData) -> None:
    if not ctx.settings.customers.enabled:
        return
    till_id = data.till_customer_id
    rec = ctx.txn.get(TILL, till_id) or {"number": None, "fields": None}
    fields = _fields(data.customer)
    if not _till_order(ctx, rec, till_id, data.sequence, fields):
        return
    _stamp_till(ctx, rec, data.sequence)
    changed = rec.get("fields") != fields
    rec["fields"] = fields
    _overlaps_till_write(rec)
    if changed:
        rec.pop("error", None)  # the shop may have fixed what Fortnox refused
    ctx.txn.put(TILL, till_id, rec)
    if not changed:
        return
    number = rec.get("number")
    if _master(ctx) is CustomerMaster.FORTNOX and number is not None:
        fx = ctx.txn.get(FX, number)
        if _alive(fx) and fx is not None and fx["fields"] != fields:
            ctx.report(f"customer:{till_id}", {"kind": "till_edit_overwritten", "number": number})
            ctx.note("customer.till_edit_overwritten", till_customer_id=till_id, number=number)
        elif not _alive(fx):
            ctx.note("customer.not_in_fortnox", till_customer_id=till_id, number=number)
    ctx.mark_dirty(FLOW, _key(till_id))


def on_till_delete(ctx: Ctx, data: CustomerDeletedData) -> None:
    if not ctx.settings.customers.enabled:
        return
    till_id = data.till_customer_id
    rec = ctx.txn.get(TILL, till_id) or {"number": None, "fields": None}
    if not _till_order(ctx, rec, till_id, data.sequence, None):
        return
    _stamp_till(ctx, rec, data.sequence)
    had = rec.get("fields") is not None
    rec["fields"] = None
    _overlaps_till_write(rec)
    ctx.txn.put(TILL, till_id, rec)
    if not had:
        return
    number = rec.get("number")
    if _master(ctx) is CustomerMaster.FORTNOX and number and _alive(ctx.txn.get(FX, number)):
        ctx.report(f"customer:{till_id}", {"kind": "till_delete_overwritten", "number": number})
        ctx.note("customer.till_delete_overwritten", till_customer_id=till_id, number=number)
    ctx.mark_dirty(FLOW, _key(till_id))


def _overlaps_till_write(rec: dict[str, Any]) -> None:
    """A till event while our write to the till is in flight: the till may apply them in either
    order, so what the till has is known only once the write is confirmed; then it is synced
    again."""
    if rec.get("till_inflight"):
        rec["resync"] = True


# --- Fortnox changes -----------------------------------------------------------------------------


def on_fortnox_customer(ctx: Ctx, data: FortnoxCustomerData) -> None:
    if not ctx.settings.customers.enabled:
        return
    number = data.customer_number
    fx = ctx.txn.get(FX, number) or {"till_id": None}
    if ctx.is_repeat(fx, "fx", data.observed.seq):
        ctx.note("customer.stale_record", number=number, seq=data.observed.seq)
        if data.observed.sync_pass is not None:  # the pass's page showed it present
            passes.listed(ctx, FX, RESOURCE, number, data.observed.sync_pass, data.observed.seq)
        return
    ctx.stamp(fx, "fx", data.observed.seq)
    fx["seen"] = passes.observed(ctx, RESOURCE, data.observed.sync_pass)
    fields = _fields(data.customer)
    changed = fx.get("fields") != fields or bool(fx.get("deleted"))
    fx["fields"] = fields
    fx["deleted"] = False
    till_id = fx.get("till_id") or _pending_owner(ctx, number)
    adopted = False
    if till_id is None and data.created_for is not None:
        till_id = _claim(ctx, fx, number, data.created_for)
        adopted = till_id is not None
    if till_id is None and fx.get("created_for") is None:
        till_id = _adopt(ctx, number)
        adopted = till_id is not None
    rec = None if till_id is None else ctx.txn.get(TILL, till_id)
    if (
        till_id is not None
        and rec is not None
        and rec.get("number") not in (None, number)
        and _alive(ctx.txn.get(FX, rec["number"]))
    ):
        # The till customer is mapped to another live number already: keep the mapping
        # one-to-one and treat this one as a Fortnox-only customer.
        ctx.note("customer.second_number_ignored", number=number, till_customer_id=till_id)
        till_id, rec = None, None
    fx["till_id"] = till_id
    ctx.txn.put(FX, number, fx)
    if till_id is None or not (changed or adopted):
        return
    rec = rec or {"number": number, "fields": None}
    if rec.get("number") != number and not rec.get("pending"):
        rec["number"] = number
    ctx.txn.put(TILL, till_id, rec)
    if rec.get("fields") != fields:
        if (
            _master(ctx) is CustomerMaster.TILL
            and rec.get("fields") is not None
            and not rec.get("pending")
        ):
            ctx.report(
                f"customer:{till_id}", {"kind": "fortnox_edit_overwritten", "number": number}
            )
            ctx.note("customer.fortnox_edit_overwritten", till_customer_id=till_id, number=number)
        ctx.mark_dirty(FLOW, _key(till_id))


def _pending_owner(ctx: Ctx, number: str) -> str | None:
    owner = ctx.txn.get(PENDING, number)
    return None if owner is None else str(owner["till_id"])


def _claim(ctx: Ctx, fx: dict[str, Any], number: str, till_id: str) -> str | None:
    """A Fortnox customer Kassasync created for ``till_id`` (its mark in ExternalReference) that
    this state does not link: state that lost the create's answer, or a till event that has not
    come yet. It is that till customer's record, never a Fortnox-only one: linked at once where
    the till customer is known (or Fortnox is master and brings it into the till under its own
    id), else remembered so that the till customer's create takes this number back."""
    if ctx.txn.get(TILL, till_id) is None and _master(ctx) is not CustomerMaster.FORTNOX:
        fx["created_for"] = till_id
        ctx.note("customer.created_for_unknown", number=number, till_customer_id=till_id)
        return None
    fx.pop("created_for", None)
    ctx.note("customer.linked_by_reference", number=number, till_customer_id=till_id)
    return till_id


def _adopt(ctx: Ctx, number: str) -> str | None:
    """Decide whether a Fortnox customer unknown to the till should be brought into the till."""
    settings = ctx.settings.customers
    if settings.master is CustomerMaster.TILL:
        if not settings.import_fortnox_register or _import_done(ctx):
            ctx.note("customer.fortnox_only_ignored", number=number, reason="the till is master")
            return None
        ctx.note("customer.imported_from_fortnox", number=number)
    till_id = fortnox_till_id(number)
    existing = ctx.txn.get(TILL, till_id)
    attempt = 1
    while existing is not None and (
        existing.get("number") not in (None, number) or existing.get("pending")
    ):
        # The till id is taken (the number was used before and deleted): use the next one.
        attempt += 1
        till_id = f"{fortnox_till_id(number)}~{attempt}"
        existing = ctx.txn.get(TILL, till_id)
    importing = settings.master is CustomerMaster.TILL
    rec = existing or {"fields": None}
    ctx.txn.put(TILL, till_id, {**rec, "number": number, "import": importing})
    return till_id


def _import_done(ctx: Ctx) -> bool:
    return bool((ctx.txn.get(TENANT, "customer_import") or {}).get("done"))


def on_fortnox_deleted(ctx: Ctx, number: str) -> None:
    fx = ctx.txn.get(FX, number)
    if fx is None:
        return
    if ctx.is_repeat(fx, "fx"):
        ctx.note("customer.stale_record", number=number, seq=None)
        return
    ctx.stamp(fx, "fx")
    ctx.txn.put(FX, number, fx)
    _gone(ctx, number, "deleted in Fortnox")


def _gone(ctx: Ctx, number: str, reason: str) -> None:
    fx = ctx.txn.get(FX, number)
    if fx is None or fx.get("deleted"):
        return
    fx["deleted"] = True
    ctx.txn.put(FX, number, fx)
    till_id = fx.get("till_id")
    ctx.note("customer.deleted_in_fortnox", number=number, till_customer_id=till_id, reason=reason)
    rec = None if till_id is None else ctx.txn.get(TILL, till_id)
    if till_id is None or rec is None or rec.get("number") != number:
        return
    if _master(ctx) is CustomerMaster.TILL:
        # The till is master: the customer gets a new Fortnox record (the old number is spent).
        rec["number"] = None
        rec["attempt"] = int(rec.get("attempt", 0)) + 1
        ctx.txn.put(TILL, till_id, rec)
        ctx.mark_dirty(FLOW, _key(till_id))
    elif ctx.settings.customers.delete_missing:
        ctx.mark_dirty(FLOW, _key(till_id))
    elif rec.get("fields") is not None:
        ctx.report(f"customer:{till_id}", {"kind": "not_in_fortnox", "number": number})


def on_sync_completed(ctx: Ctx, data: SyncCompletedData) -> None:
    settings = ctx.settings.customers
    if not settings.enabled:
        return
    if not passes.complete(ctx, RESOURCE, data.sync_pass, data.count):
        return
    if (
        settings.master is CustomerMaster.TILL
        and settings.import_fortnox_register
        and not _import_done(ctx)
    ):
        ctx.txn.put(TENANT, "customer_import", {"done": True, "pass": data.sync_pass})
        ctx.note("customer.import_completed", sync_pass=data.sync_pass)
    for number, fx in ctx.txn.scan(FX):
        if passes.missing(fx, data):
            _gone(ctx, number, "missing in Fortnox")


def on_settings_changed(ctx: Ctx, old: TenantSettings, new: TenantSettings) -> None:
    """A new master mode or option: every customer is looked at again."""
    if old.customers == new.customers or not new.customers.enabled:
        return
    for number, fx in ctx.txn.scan(FX):
        if fx.get("till_id") is None and _alive(fx):
            till_id = _adopt(ctx, number)
            if till_id is not None:
                ctx.txn.put(FX, number, {**fx, "till_id": till_id})
    for till_id, _ in ctx.txn.scan(TILL):
        ctx.mark_dirty(FLOW, _key(till_id))


# --- flush ---------------------------------------------------------------------------------------


def flush(ctx: Ctx, key: str) -> None:
    kind, _, till_id = key.partition(":")
    if kind != "t":
        return
    rec = ctx.txn.get(TILL, till_id)
    if rec is None or rec.get("error"):
        return
    if _master(ctx) is CustomerMaster.TILL:
        _flush_till_master(ctx, till_id, rec)
    else:
        _flush_fortnox_master(ctx, till_id, rec)


def flush_pending(ctx: Ctx, till_id: str) -> None:
    """Write out a customer's pending changes now (before an order that names the customer)."""
    dirty_key = f"{FLOW}:{_key(till_id)}"
    if ctx.txn.get(DIRTY, dirty_key) is not None:
        ctx.txn.delete(DIRTY, dirty_key)
        flush(ctx, _key(till_id))


def _create_in_fortnox(ctx: Ctx, till_id: str, rec: dict[str, Any]) -> None:
    if rec.get("pending") or rec.get("fields") is None:
        return
    attempt = int(rec.get("attempt", 0))
    number = candidate_number(till_id, attempt)
    while _taken(ctx, number, till_id):
        attempt += 1
        number = candidate_number(till_id, attempt)
    cmd = ctx.command(
        CreateFortnoxCustomer,
        f"customer.create:{till_id}:{attempt}",
        CreateCustomerData(
            till_customer_id=till_id,
            customer_number=number,
            customer=CustomerFields.model_validate(rec["fields"]),
        ),
    )
    rec.update(pending=cmd.id, pending_fields=rec["fields"], attempt=attempt)
    ctx.txn.put(TILL, till_id, rec)
    ctx.txn.put(PENDING, number, {"till_id": till_id})
    _remember(ctx, cmd.id, till_id, cmd.type)


def _taken(ctx: Ctx, number: str, till_id: str) -> bool:
    """True if ``number`` belongs to someone else, or is spent (deleted in Fortnox)."""
    fx = ctx.txn.get(FX, number)
    if fx is not None and (fx.get("deleted") or fx.get("till_id") not in (None, till_id)):
        return True
    if fx is not None and fx.get("till_id") is None and fx.get("fields") is not None:
        # A Fortnox-only customer, unless Kassasync created it for this very till customer.
        return fx.get("created_for") != till_id
    owner = _pending_owner(ctx, number)
    return owner is not None and owner != till_id


def _flush_till_master(ctx: Ctx, till_id: str, rec: dict[str, Any]) -> None:
    number = rec.get("number")
    fields = rec.get("fields")
    if number is None:
        _create_in_fortnox(ctx, till_id, rec)
        return
    fx = ctx.txn.get(FX, number) or {"till_id": till_id}
    if fx.get("deleted"):
        # Fortnox lost it (perhaps while Fortnox was master): the till is master now.
        rec["number"] = None
        rec["attempt"] = int(rec.get("attempt", 0)) + 1
        rec["import"] = False
        _create_in_fortnox(ctx, till_id, rec)
        ctx.txn.put(TILL, till_id, rec)
        return
    if rec.get("import"):
        # One-off import of the existing Fortnox register; from then on the till owns it.
        if fx.get("fields") is not None:
            _send_to_till(ctx, till_id, rec, number, fx["fields"])
        rec["import"] = False
        ctx.txn.put(TILL, till_id, rec)
        return
    if fields is None:
        if fx.get("fields") and fx["fields"].get("active", True):
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
        # The one exception: a customer created in the till is created in Fortnox.
        _create_in_fortnox(ctx, till_id, rec)
        return
    fx = ctx.txn.get(FX, number)
    if fx is None:
        return
    # After a till write that overlapped a till event, what the till has is not known: the
    # wanted state is written again.
    unsure = bool(rec.get("resync")) and not rec.get("till_inflight")
    if fx.get("deleted"):
        if ctx.settings.customers.delete_missing and (rec.get("fields") is not None or unsure):
            _delete_from_till(ctx, till_id, rec, "not in Fortnox")
        return
    if fx.get("fields") is None:
        return
    if rec.get("fields") != fx["fields"] or unsure:
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
    rec["till_inflight"] = cmd.id
    rec["inflight_fields"] = fields
    rec.pop("resync", None)
    ctx.txn.put(TILL, till_id, rec)
    _remember(ctx, cmd.id, till_id, cmd.type)


def _delete_from_till(ctx: Ctx, till_id: str, rec: dict[str, Any], reason: str) -> None:
    cmd = ctx.command(
        DeleteTillCustomer,
        f"customer.till_delete:{till_id}",
        DeleteTillCustomerData(till_customer_id=till_id, reason=reason),
    )
    rec["fields"] = None
    rec["till_inflight"] = cmd.id
    rec["inflight_fields"] = None
    rec.pop("resync", None)
    ctx.txn.put(TILL, till_id, rec)
    ctx.note("customer.deleted_from_till", till_customer_id=till_id, reason=reason)
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
            _created(ctx, till_id, rec, outcome)
        elif outcome.status in (OutcomeStatus.REJECTED, OutcomeStatus.SKIPPED):
            rec.pop("pending", None)
            rec.pop("pending_fields", None)
            if outcome.status is OutcomeStatus.REJECTED:
                rec["error"] = outcome.error.model_dump(mode="json") if outcome.error else None
            ctx.txn.put(TILL, till_id, rec)
            ctx.raise_event(CustomerFailed(till_id, outcome))
    else:
        if command_type.startswith("till.") and rec.get("till_inflight") == outcome.command_id:
            if outcome.status is OutcomeStatus.RETRYING:
                return
            rec.pop("till_inflight", None)
            written = rec.pop("inflight_fields", None)
            if outcome.status is not OutcomeStatus.DONE:
                rec["resync"] = True  # not carried out: what the till has is not known
            elif rec.get("resync") and _master(ctx) is CustomerMaster.TILL:
                # The till is master but a till event crossed our write. A till event older
                # than this answer may have come before our write landed: take the write as
                # the till's state; a newer one came after it and stands.
                last = rec.get("till_at")
                if last is None or dt.datetime.fromisoformat(last) < ctx.now:
                    rec["fields"] = written
                rec.pop("resync", None)
                ctx.mark_dirty(FLOW, _key(till_id))
            ctx.txn.put(TILL, till_id, rec)
            if rec.get("resync") and outcome.status is OutcomeStatus.DONE:
                # (A write that failed is done again on resume or by an operator's retry.)
                ctx.mark_dirty(FLOW, _key(till_id))
        if outcome.status is OutcomeStatus.REJECTED:
            ctx.report(
                f"customer:{till_id}",
                {"kind": "write_rejected", "command": command_type, "error": _error(outcome)},
            )


def _created(ctx: Ctx, till_id: str, rec: dict[str, Any], outcome: OutcomeData) -> None:
    number = outcome.result.get("customer_number") or candidate_number(
        till_id, int(rec.get("attempt", 0))
    )
    created = rec.pop("pending_fields", None) or rec.get("fields")
    rec.pop("pending", None)
    rec.pop("error", None)
    rec["number"] = number
    ctx.txn.put(TILL, till_id, rec)
    ctx.txn.delete(PENDING, number)
    fx = ctx.txn.get(FX, number) or {}
    fx["till_id"] = till_id
    fx.pop("created_for", None)
    if fx.get("fields") is None or fx.get("deleted"):
        # What Fortnox has now is what the create sent (a later edit is not in it).
        fx["fields"] = created
        fx["deleted"] = False
    answered = _answered_seq(outcome)
    if answered is None:
        # An outcome from an engine before observation numbers: the pass under way, as then.
        fx["seen"] = passes.current(ctx, RESOURCE)
    # Present from the moment Fortnox answered: a pass that began before may not list it, and
    # a pass that began after must (not "seen" in a pass by arriving while it is under way:
    # the customer may have been deleted before that pass began).
    passes.present(fx, answered)
    ctx.txn.put(FX, number, fx)
    ctx.note("customer.created_in_fortnox", till_customer_id=till_id, number=number)
    if (
        _master(ctx) is CustomerMaster.FORTNOX
        and rec.get("fields") is not None
        and rec["fields"] != fx["fields"]
    ):
        ctx.report(f"customer:{till_id}", {"kind": "till_edit_overwritten", "number": number})
        ctx.note("customer.till_edit_overwritten", till_customer_id=till_id, number=number)
    ctx.raise_event(CustomerReady(till_id, number))
    ctx.mark_dirty(FLOW, _key(till_id))


def _answered_seq(outcome: OutcomeData) -> int | None:
    """The observation number the create's answer was given (none from an older engine)."""
    seq = outcome.result.get("seq")
    return int(seq) if seq is not None and seq.isdigit() and len(seq) <= 18 else None


def _error(outcome: OutcomeData) -> str:
    return outcome.error.message if outcome.error else outcome.status.value


def retry(ctx: Ctx, till_id: str) -> None:
    rec = ctx.txn.get(TILL, till_id)
    if rec is not None:
        rec.pop("error", None)
        ctx.txn.put(TILL, till_id, rec)
        ctx.mark_dirty(FLOW, _key(till_id))


def mapping(ctx: Ctx, till_id: str) -> str | None:
    """The customer's number in Fortnox, if Fortnox has it."""
    rec = ctx.txn.get(TILL, till_id)
    number = None if rec is None else rec.get("number")
    if number is None or not _alive(ctx.txn.get(FX, number)):
        return None
    return str(number)


def ensure_in_fortnox(ctx: Ctx, till_id: str) -> str:
    """Make sure a till customer is (or is being) created in Fortnox.

    Returns ``ready``, ``creating``, ``unknown`` (the till has not sent the customer, or deleted
    it), ``failed`` (Fortnox refused the create; an operator retry or a till edit tries again) or
    ``deleted`` (Fortnox deleted it and Fortnox is master: it is not created again).
    """
    rec = ctx.txn.get(TILL, till_id)
    if mapping(ctx, till_id) is not None:
        return "ready"
    if rec is None or rec.get("fields") is None:
        return "unknown"
    if rec.get("number") is not None:
        return "deleted"
    if rec.get("error"):
        return "failed"
    if not rec.get("pending"):
        ctx.mark_dirty(FLOW, _key(till_id))
    return "creating"
