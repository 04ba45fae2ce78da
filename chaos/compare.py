"""Both sides' state after a run, normalised, and the figures a chaos run reports.

``snapshot`` reads the till (its articles, stock and the customers Kassasync sent it) and the
Fortnox company (articles, the customers, orders and vouchers Kassasync wrote) of one tenant,
without anything that legitimately differs between two runs (document numbers, timestamps).

The figures, per runtime:

* ``duplicates``: Fortnox records written more than once: customers with the same
  ``ExternalReference``, orders with the same ``ExternalInvoiceReference1``, vouchers with the
  same Z-report marker (each extra copy counts one).
* ``lost_movements``: stock units by which a till or Fortnox level differs from the workload's
  truth (seed + the till's movements - the webshop's sales), summed over both sides; a lost
  and a doubled movement both count.
* ``lost_events``: acknowledged till events missing: an id the ingest API acknowledged that is not
  on the log, or a till customer, invoice or Z-report without its Fortnox record.
* ``drift``: leaves of the normalised state (both sides, every tenant) that differ from the
  uninterrupted run of the same workload.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chaos.workload import TenantPlan, Workload
from chaos.world import World

ZREPORT_MARKER = "kassasync zreport "
CUSTOMER_MARKER = "kassasync:"


def _qty(value: Any) -> str:
    number = Decimal(str(value if value not in (None, "") else 0)).normalize()
    return f"{number:f}"


def _money(value: Any) -> str:
    return str(Decimal(str(value if value not in (None, "") else 0)).quantize(Decimal("0.01")))


@dataclass
class TenantState:
    """One tenant's normalised state and what was found written twice."""

    state: dict[str, Any]
    duplicates: dict[str, int] = field(default_factory=dict)
    #: What was written twice, with Fortnox's numbers (for the details, not compared).
    twice: list[str] = field(default_factory=list)


async def snapshot(world: World, tenant: str) -> TenantState:
    till = world.tills[tenant]
    fortnox = await world.fortnox_state(tenant)
    dupes: Counter[str] = Counter()

    customers: dict[str, Any] = {}
    refs: Counter[str] = Counter()
    numbers: dict[str, list[str]] = {}
    for raw in fortnox["customers"]:
        ref = str(raw.get("ExternalReference") or "")
        key = ref if ref.startswith(CUSTOMER_MARKER) else f"#{raw['CustomerNumber']}"
        refs[key] += 1
        numbers.setdefault(key, []).append(str(raw["CustomerNumber"]))
        customers[key] = {
            "number": str(raw["CustomerNumber"]),
            "name": raw.get("Name"),
            "city": raw.get("City"),
            "email": raw.get("Email"),
            "active": raw.get("Active"),
        }
    dupes["customers"] = sum(n - 1 for k, n in refs.items() if k.startswith(CUSTOMER_MARKER))

    orders: dict[str, Any] = {}
    order_refs: Counter[str] = Counter()
    for raw in fortnox.get("orders", []):
        ref = str(raw.get("ExternalInvoiceReference1") or "")
        if not ref.startswith("KS-"):
            continue
        order_refs[ref] += 1
        orders[ref] = {
            "customer": str(raw.get("CustomerNumber")),
            "rows": [
                [
                    r.get("ArticleNumber"),
                    r.get("Description"),
                    _qty(r.get("OrderedQuantity")),
                    _money(r.get("Price")),
                    _qty(r.get("VAT")),
                ]
                for r in raw.get("OrderRows", [])
            ],
        }
    dupes["orders"] = sum(n - 1 for n in order_refs.values())

    vouchers: dict[str, Any] = {}
    markers: Counter[str] = Counter()
    for year in fortnox["financialyears"]:
        for raw in year.get("vouchers", []):
            comments = str(raw.get("Comments") or "")
            if not comments.startswith(ZREPORT_MARKER):
                continue
            markers[comments] += 1
            vouchers[comments] = {
                "series": raw.get("VoucherSeries"),
                "description": raw.get("Description"),
                "date": raw.get("TransactionDate"),
                "rows": sorted(
                    [str(r.get("Account")), _money(r.get("Debit")), _money(r.get("Credit"))]
                    for r in raw.get("VoucherRows", [])
                ),
            }
    dupes["vouchers"] = sum(n - 1 for n in markers.values())

    state = {
        "till": {
            "articles": {
                number: {
                    k: article.get(k)
                    for k in ("description", "ean", "price", "vat", "unit", "stock_goods")
                }
                for number, article in sorted(till.articles.items())
            },
            "stock": {k: _qty(v) for k, v in sorted(till.stock.items())},
            "customers": {
                k: {f: v.get(f) for f in ("name", "city", "email", "fortnox_number")}
                for k, v in sorted(till.customers.items())
            },
        },
        "fortnox": {
            "articles": {
                a["ArticleNumber"]: {
                    "description": a.get("Description"),
                    "stock": _qty(a.get("QuantityInStock")),
                }
                for a in fortnox["articles"]
            },
            "customers": customers,
            "orders": orders,
            "vouchers": vouchers,
        },
    }
    twice = [f"customer {k}: numbers {', '.join(v)}" for k, v in numbers.items() if len(v) > 1]
    twice += [f"order {k}: {n} times" for k, n in order_refs.items() if n > 1]
    twice += [f"voucher '{k}': {n} times" for k, n in markers.items() if n > 1]
    return TenantState(state=state, duplicates=dict(dupes), twice=twice)


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """A nested structure as ``{path: leaf}``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(leaves(item, f"{path}/{key}"))
        return out
    return {path: value}


def differences(left: Any, right: Any) -> list[str]:
    """The paths where two states differ (a path missing on one side counts)."""
    a, b = leaves(left), leaves(right)
    return sorted(p for p in a.keys() | b.keys() if a.get(p, "<missing>") != b.get(p, "<missing>"))


@dataclass
class Figures:
    duplicates: int = 0
    lost_movements: int = 0
    lost_events: int = 0
    drift: int = 0
    details: list[str] = field(default_factory=list)

    def clean(self) -> bool:
        return not (self.duplicates or self.lost_movements or self.lost_events or self.drift)


def stock_off(plan: TenantPlan, state: dict[str, Any]) -> tuple[Decimal, list[str]]:
    """Units by which each side's stock differs from the workload's truth."""
    total = Decimal(0)
    notes: list[str] = []
    for article, want in plan.expected_stock().items():
        for side, have in (
            ("till", state["till"]["stock"].get(article)),
            ("fortnox", state["fortnox"]["articles"].get(article, {}).get("stock")),
        ):
            got = Decimal(have) if have is not None else Decimal(0)
            if got != want:
                total += abs(got - want)
                notes.append(f"{plan.tenant} {side} stock {article}: {got}, want {want}")
    return total, notes


def missing_records(plan: TenantPlan, state: dict[str, Any]) -> list[str]:
    fortnox = state["fortnox"]
    missing = [
        f"{plan.tenant}: customer {c} not in Fortnox"
        for c in plan.till_customers()
        if f"{CUSTOMER_MARKER}{c}" not in fortnox["customers"]
    ]
    missing += [
        f"{plan.tenant}: invoice {i} has no order"
        for i in plan.invoices()
        if f"KS-{i}" not in fortnox["orders"]
    ]
    missing += [
        f"{plan.tenant}: Z-report {z} has no voucher"
        for z in plan.zreports()
        if f"{ZREPORT_MARKER}{z.replace('-', ':', 1)}" not in fortnox["vouchers"]
    ]
    return missing


def converged(workload: Workload, states: dict[str, TenantState]) -> bool:
    """Everything the workload should have made is there (used to stop waiting early)."""
    for plan in workload.plans:
        state = states[plan.tenant].state
        off, _ = stock_off(plan, state)
        if off or missing_records(plan, state):
            return False
        for article in plan.actions():
            if article.kind == "article_new" and article.key not in state["till"]["articles"]:
                return False
    return True


def figures(
    workload: Workload,
    states: dict[str, TenantState],
    reference: dict[str, TenantState] | None,
    unlogged: list[str],
) -> Figures:
    out = Figures()
    for plan in workload.plans:
        found = states[plan.tenant]
        out.duplicates += sum(found.duplicates.values())
        for kind, count in found.duplicates.items():
            if count:
                out.details.append(f"{plan.tenant}: {count} duplicate {kind}")
        out.details += [f"{plan.tenant}: {item}" for item in found.twice]
        off, notes = stock_off(plan, found.state)
        out.lost_movements += int(off.to_integral_value())
        out.details += notes
        missing = missing_records(plan, found.state)
        out.lost_events += len(missing)
        out.details += missing
        if reference is not None:
            diff = differences(reference[plan.tenant].state, found.state)
            out.drift += len(diff)
            out.details += [f"{plan.tenant} drift {p}" for p in diff[:20]]
    out.lost_events += len(unlogged)
    out.details += [f"acknowledged but not on the log: {i}" for i in unlogged[:20]]
    return out


__all__ = ["Figures", "TenantState", "converged", "figures", "snapshot"]
