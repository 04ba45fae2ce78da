"""Stock: the saved-baseline merge, as two exactly-once delta channels.

The seed rule is ``new = base + (till - base) + (fortnox - base)``, written to both sides, with
``new`` saved as the next base. Written that way it loses sales whenever a side moves while a
write is in flight. We keep the rule's meaning and make it safe:

* Till -> Fortnox: every till movement (and every count correction) is added to ``to_fx``; a flush
  sends it to Fortnox as one ``fortnox.stock.apply`` delta, at most one in flight per article.
* Fortnox -> till: every change Fortnox shows that Kassasync did not make ("foreign") is found by
  comparing each observed ``QuantityInStock`` with the last value known (``fx``), in the order the
  tenant's Fortnox reads and writes really happened, and added to ``to_till``; a flush sends it as
  one ``till.stock.adjust`` delta.

Invariant (checked by the property tests):
``till + to_till + inflight_till == fx + to_fx + inflight_fx``. At quiescence nothing is owed or in
flight, so the till equals Fortnox, and every movement on either side has been applied exactly once
to the other side. ``base`` and the merge record are kept for people: the dashboard shows the last
merge's base, till, Fortnox and new values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from reconcilers import stock_ids
from reconcilers.context import Ctx, Refused
from topics.commands import AdjustTillStock, AdjustTillStockData, ApplyFortnoxStock, ApplyStockData
from topics.fortnox import (
    FortnoxArticle,
    OverlapReason,
    StockChecksData,
    StockOverlap,
    StockOverlapData,
    StockWatchData,
    StockWrittenData,
)
from topics.outcomes import OutcomeData, OutcomeStatus
from topics.till import StockCountedData, StockMovementData

FLOW = "stock"
KIND = "stock"
MERGES = "stock.merge"
#: Writes a foreign change overlapped (possible lost sales), one per write (:func:`write_key`),
#: for the shop.
OVERLAPS = "stock.overlap"
#: Overwritten sales Kassasync established and applied to Fortnox again, one per write.
REPAIRS = "stock.repaired"
#: Absolute writes a topics-feed watch is still looking at (one record per tenant, key
#: ``UNCHECKED``): ended by a check or an overlap, or reported when a new watch starts first.
WATCHES = "stock.watch"
UNCHECKED = "unchecked"
ZERO = Decimal(0)


@dataclass(slots=True)
class Level:
    base: Decimal = ZERO
    till: Decimal = ZERO
    fx: Decimal = ZERO
    to_fx: Decimal = ZERO
    to_till: Decimal = ZERO
    till_since: Decimal = ZERO
    fx_since: Decimal = ZERO
    fx_inflight: dict[str, Any] | None = None
    till_inflight: dict[str, Any] | None = None
    last_written: str | None = None
    fx_seq: int = -1
    blocked_fx: str | None = None
    blocked_till: str | None = None

    @classmethod
    def load(cls, record: dict[str, Any] | None) -> Level:
        if record is None:
            return cls()
        level = cls(**record)
        for name in ("base", "till", "fx", "to_fx", "to_till", "till_since", "fx_since"):
            setattr(level, name, Decimal(getattr(level, name)))
        return level

    def dump(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies every value, and this runs for every
        # stock message (it was a fifth of the replay's CPU). The in-flight dicts are flat
        # records of text and numbers, so a shallow copy detaches them.
        return {
            "base": str(self.base),
            "till": str(self.till),
            "fx": str(self.fx),
            "to_fx": str(self.to_fx),
            "to_till": str(self.to_till),
            "till_since": str(self.till_since),
            "fx_since": str(self.fx_since),
            "fx_inflight": None if self.fx_inflight is None else dict(self.fx_inflight),
            "till_inflight": None if self.till_inflight is None else dict(self.till_inflight),
            "last_written": self.last_written,
            "fx_seq": self.fx_seq,
            "blocked_fx": self.blocked_fx,
            "blocked_till": self.blocked_till,
        }

    @property
    def inflight_fx(self) -> Decimal:
        return Decimal(self.fx_inflight["delta"]) if self.fx_inflight else ZERO

    @property
    def inflight_till(self) -> Decimal:
        inflight = self.till_inflight
        if inflight is None or inflight.get("counted"):
            return ZERO
        return Decimal(inflight["delta"])

    @property
    def settled(self) -> bool:
        return (
            self.to_fx == 0
            and self.to_till == 0
            and self.fx_inflight is None
            and self.till_inflight is None
        )


def _load(ctx: Ctx, article: str) -> Level:
    return Level.load(ctx.txn.get(KIND, article))


def _save(ctx: Ctx, article: str, level: Level) -> None:
    ctx.txn.put(KIND, article, level.dump())


def _enabled(ctx: Ctx) -> bool:
    return ctx.settings.stock.enabled


def on_movement(ctx: Ctx, data: StockMovementData) -> None:
    if not _enabled(ctx):
        ctx.note("stock.ignored", article=data.article_number, reason="stock sync is off")
        return
    known = stock_ids.recall(ctx, stock_ids.MOVEMENT_IDS, data.movement_id)
    if known is not None:
        _same_or_refuse(
            known,
            "movement_id",
            data.movement_id,
            data.article_number,
            "delta",
            data.delta,
        )
        ctx.note("stock.movement.duplicate", movement_id=data.movement_id)
        return
    stock_ids.remember(
        ctx, stock_ids.MOVEMENT_IDS, data.movement_id, data.article_number, str(data.delta)
    )
    level = _load(ctx, data.article_number)
    level.till += data.delta
    level.to_fx += data.delta
    level.till_since += data.delta
    _save(ctx, data.article_number, level)
    ctx.mark_dirty(FLOW, data.article_number)


def _same_or_refuse(
    known: stock_ids.Known, id_field: str, ident: str, article: str, name: str, value: Decimal
) -> None:
    """Nothing if the movement (or count) ``ident`` applied before was this one (a till sending
    one movement in two messages); raises :class:`Refused` if the till reused the id for another
    article or another value, which Kassasync cannot apply without losing one of them. Records
    from before the value was kept compare by article only."""
    before = known.value
    if known.article == article and (before is None or Decimal(before) == value):
        return
    raise Refused(
        f"{id_field} {ident!r} was applied before as {name} {before} of article "
        f"{known.article!r}; this message says {name} {value} of article {article!r}. "
        f"A new movement or count needs a new {id_field}"
    )


def on_count(ctx: Ctx, data: StockCountedData) -> None:
    if not _enabled(ctx):
        ctx.note("stock.ignored", article=data.article_number, reason="stock sync is off")
        return
    known = stock_ids.recall(ctx, stock_ids.COUNT_IDS, data.count_id)
    if known is not None:
        _same_or_refuse(
            known, "count_id", data.count_id, data.article_number, "quantity", data.quantity
        )
        ctx.note("stock.count.duplicate", count_id=data.count_id)
        return
    stock_ids.remember(
        ctx, stock_ids.COUNT_IDS, data.count_id, data.article_number, str(data.quantity)
    )
    level = _load(ctx, data.article_number)
    inflight = level.till_inflight
    applied = inflight is not None and data.last_applied_command_id == inflight["id"]
    if inflight is not None and applied and not inflight.get("counted"):
        # The till had applied our adjustment when it counted: it is in the count.
        level.till += Decimal(inflight["delta"])
        level.till_inflight = {**inflight, "counted": True}
    correction = data.quantity - level.till
    ctx.note(
        "stock.counted",
        article=data.article_number,
        counted=str(data.quantity),
        expected=str(level.till),
        correction=str(correction),
    )
    level.till = data.quantity
    level.to_fx += correction
    level.till_since += correction
    _save(ctx, data.article_number, level)
    if correction:
        ctx.mark_dirty(FLOW, data.article_number)


def _stale(level: Level, seq: int | None) -> bool:
    """True for a Fortnox fact older than one already applied (it is then ignored)."""
    if seq is None:
        return False
    if seq <= level.fx_seq:
        return True
    level.fx_seq = seq
    return False


def observe_fortnox(ctx: Ctx, article: FortnoxArticle, seq: int | None = None) -> None:
    """A Fortnox read showed ``QuantityInStock``; anything we did not cause is a foreign change."""
    if not _enabled(ctx) or not article.stock_goods:
        return
    level = _load(ctx, article.article_number)
    if _stale(level, seq):
        ctx.note("stock.stale_observation", article=article.article_number, seq=seq)
        return
    foreign = article.quantity_in_stock - level.fx
    if foreign == 0:
        if seq is not None:
            _save(ctx, article.article_number, level)
        return
    level.fx = article.quantity_in_stock
    level.to_till += foreign
    level.fx_since += foreign
    _save(ctx, article.article_number, level)
    ctx.mark_dirty(FLOW, article.article_number)


def write_key(command_id: str, read: Decimal, written: Decimal) -> str:
    """The key of one absolute write's report. A command can write more than once (again from
    a new read after an outcome the level could not prove): each write may overwrite a sale of
    its own, so each is reported (or repaired) on its own, and a report delivered again is one."""
    return f"{command_id}~{_plain(read)}>{_plain(written)}"


def _plain(quantity: Decimal) -> str:
    return format(quantity.normalize(), "f")


def reports_of(records: Iterable[tuple[str, dict[str, Any]]], command_id: str) -> list[str]:
    """The keys among ``records`` (possible lost sales or repairs) that report a write of
    ``command_id`` (under the bare command id in stores from before one record per write)."""
    prefix = f"{command_id}~"
    return [key for key, _ in records if key == command_id or key.startswith(prefix)]


def _reported(ctx: Ctx, command_id: str, overlap: StockOverlap) -> bool:
    """Whether this write of ``command_id`` is already reported or repaired. A record under
    the bare command id (stores from before one record per write) counts for the write it
    names."""
    key = write_key(command_id, overlap.read, overlap.written)
    if ctx.txn.get(OVERLAPS, key) is not None or ctx.txn.get(REPAIRS, key) is not None:
        return True
    for kind in (OVERLAPS, REPAIRS):
        earlier = ctx.txn.get(kind, command_id)
        if earlier is not None and (
            Decimal(earlier["read"]),
            Decimal(earlier["written"]),
        ) == (overlap.read, overlap.written):
            return True
    return False


def on_written(ctx: Ctx, data: StockWrittenData) -> None:
    """Kassasync's own write as Fortnox saw it: ``read`` before, ``written`` after."""
    level = _load(ctx, data.article_number)
    if level.last_written == data.command_id or _stale(level, data.seq):
        ctx.note("stock.written.duplicate", command_id=data.command_id)
        return
    foreign = data.read - level.fx
    level.to_till += foreign
    level.fx_since += foreign
    level.fx = data.written
    applied = data.written - data.read
    inflight = level.fx_inflight
    if inflight is not None and inflight["id"] == data.command_id:
        level.to_fx += Decimal(inflight["delta"]) - applied
        level.fx_inflight = None
    else:
        # A write we had not recorded as in flight (it was re-queued meanwhile): what it applied
        # is no longer owed.
        level.to_fx -= applied
    level.last_written = data.command_id
    if data.overlap is not None and not _reported(ctx, data.command_id, data.overlap):
        # An earlier attempt of the command the level could not settle (or this write's own).
        _record_overlap(ctx, data.article_number, data.command_id, data.overlap)
    if data.watch is not None and data.written != data.read:
        _watched(ctx, data)
    _save(ctx, data.article_number, level)
    if not level.settled:
        ctx.mark_dirty(FLOW, data.article_number)


def _watched(ctx: Ctx, data: StockWrittenData) -> None:
    """Remember the write until its feed watch reports on it (a check or an overlap)."""
    record = ctx.txn.get(WATCHES, UNCHECKED) or {}
    writes = dict(record.get("writes") or {})
    writes[data.command_id] = {
        "article": data.article_number,
        "read": str(data.read),
        "written": str(data.written),
        "watch": data.watch,
        "at": ctx.now.isoformat(),
    }
    ctx.txn.put(WATCHES, UNCHECKED, {"writes": writes})


def _checked(ctx: Ctx, command_ids: list[str]) -> None:
    record = ctx.txn.get(WATCHES, UNCHECKED)
    if record is None:
        return
    writes = {k: v for k, v in (record.get("writes") or {}).items() if k not in command_ids}
    _keep_unchecked(ctx, writes)


def _keep_unchecked(ctx: Ctx, writes: dict[str, Any]) -> None:
    """The watched writes still waiting for their check (no record when none waits)."""
    if writes:
        ctx.txn.put(WATCHES, UNCHECKED, {"writes": writes})
    else:
        ctx.txn.delete(WATCHES, UNCHECKED)


def on_checked(ctx: Ctx, data: StockChecksData) -> None:
    """The feed watch ended on these writes and found nothing inside their windows."""
    _checked(ctx, data.command_ids)


def on_watch_started(ctx: Ctx, data: StockWatchData) -> None:
    """A session started a new feed watch: the writes an earlier watch was still looking at
    will never be checked (its process stopped within seconds of them). A sale inside their
    windows cannot be ruled out, so each is a possible lost sale, never silently dropped."""
    record = ctx.txn.get(WATCHES, UNCHECKED)
    if record is None:
        return
    writes: dict[str, Any] = dict(record.get("writes") or {})
    orphans = {k: v for k, v in writes.items() if v.get("watch") != data.watch}
    if not orphans:
        return  # the same watch announced again, or all of them still watched: nothing to write
    for command_id, write in sorted(orphans.items(), key=lambda kv: str(kv[1].get("at"))):
        del writes[command_id]
        overlap = StockOverlap(
            reason=OverlapReason.CHECK_INTERRUPTED,
            read=Decimal(write["read"]),
            written=Decimal(write["written"]),
        )
        if not _reported(ctx, command_id, overlap):
            _record_overlap(ctx, str(write["article"]), command_id, overlap)
    _keep_unchecked(ctx, writes)


def on_overlap(ctx: Ctx, data: StockOverlapData) -> None:
    """A foreign change found close to an earlier write (after it was settled)."""
    _checked(ctx, [data.command_id])
    overlap = data.overlap
    if _reported(ctx, data.command_id, overlap):
        ctx.note("stock.overlap.duplicate", command_id=data.command_id)
        return
    if overlap.repaired and overlap.repair_written is not None:
        _repaired(ctx, data, overlap.repair_written)
        return
    _record_overlap(ctx, data.article_number, data.command_id, overlap)


def _repaired(ctx: Ctx, data: StockOverlapData, written: Decimal) -> None:
    """A sale the write overwrote was applied to Fortnox again (``written`` is the level the
    repair set): for the till it is a change made in Fortnox like any other (the sale, plus
    whatever the repair's read found that was not known yet)."""
    overlap = data.overlap
    level = _load(ctx, data.article_number)
    if _stale(level, data.seq):
        ctx.note("stock.repair.stale", command_id=data.command_id, seq=data.seq)
    else:
        foreign = written - level.fx
        level.fx = written
        level.to_till += foreign
        level.fx_since += foreign
        _save(ctx, data.article_number, level)
        if not level.settled:
            ctx.mark_dirty(FLOW, data.article_number)
    record = {
        "at": ctx.now.isoformat(),
        "article": data.article_number,
        "read": str(overlap.read),
        "written": str(overlap.written),
        "foreign": None if overlap.foreign is None else str(overlap.foreign),
        "repair_read": None if overlap.repair_read is None else str(overlap.repair_read),
        "repair_written": str(written),
        "window_seconds": overlap.window_seconds,
    }
    ctx.txn.put(REPAIRS, write_key(data.command_id, overlap.read, overlap.written), record)
    ctx.note("stock.overwrite_repaired", command_id=data.command_id, **record)


def _record_overlap(ctx: Ctx, article: str, command_id: str, overlap: StockOverlap) -> None:
    """A shop-facing "possible lost sale on article X", with the numbers. The state is not
    changed: what was lost cannot be told from Fortnox's level, so a person counts it."""
    record = {
        "at": ctx.now.isoformat(),
        "article": article,
        "reason": overlap.reason.value,
        "read": str(overlap.read),
        "written": str(overlap.written),
        "level": None if overlap.level is None else str(overlap.level),
        "foreign": None if overlap.foreign is None else str(overlap.foreign),
        "assumed_landed": overlap.assumed_landed,
        "window_seconds": overlap.window_seconds,
        "events": overlap.events,
    }
    ctx.txn.put(OVERLAPS, write_key(command_id, overlap.read, overlap.written), record)
    # "level" is the log call's own argument: the level read after goes out as level_after.
    noted = {("level_after" if k == "level" else k): v for k, v in record.items()}
    ctx.warn("stock.possible_lost_sale", command_id=command_id, **noted)


def on_outcome(ctx: Ctx, article: str, command_type: str, outcome: OutcomeData) -> None:
    level = _load(ctx, article)
    if command_type == "till.stock.adjust":
        inflight = level.till_inflight
        if inflight is None or inflight["id"] != outcome.command_id:
            return
        if outcome.status is OutcomeStatus.DONE:
            if not inflight.get("counted"):
                level.till += Decimal(inflight["delta"])
            level.till_inflight = None
        elif outcome.status in (OutcomeStatus.REJECTED, OutcomeStatus.SKIPPED):
            level.to_till += Decimal(inflight["delta"])
            level.till_inflight = None
            level.blocked_till = outcome.error.message if outcome.error else outcome.status.value
        else:
            return
    elif command_type == "fortnox.stock.apply":
        inflight = level.fx_inflight
        if inflight is None or inflight["id"] != outcome.command_id:
            return
        if outcome.status in (OutcomeStatus.REJECTED, OutcomeStatus.SKIPPED):
            level.to_fx += Decimal(inflight["delta"])
            level.fx_inflight = None
            level.blocked_fx = outcome.error.message if outcome.error else outcome.status.value
        else:
            # DONE is settled by fortnox.stock.written, which carries the values read and written.
            return
    _save(ctx, article, level)
    if not level.settled:
        ctx.mark_dirty(FLOW, article)


def unblock(ctx: Ctx, article: str) -> None:
    level = _load(ctx, article)
    level.blocked_fx = None
    level.blocked_till = None
    _save(ctx, article, level)
    ctx.mark_dirty(FLOW, article)


def drop_owed(ctx: Ctx, article: str, command_type: str) -> None:
    """An operator discarded a rejected stock command: the owed delta is given up, on record."""
    level = _load(ctx, article)
    if command_type == "fortnox.stock.apply":
        # Fortnox never gets the delta, so the till is brought back to Fortnox's value.
        dropped, level.to_fx, level.blocked_fx = level.to_fx, ZERO, None
        level.to_till -= dropped
    else:
        dropped, level.to_till, level.blocked_till = level.to_till, ZERO, None
        level.to_fx -= dropped
    ctx.note("stock.discarded", article=article, command_type=command_type, delta=str(dropped))
    _save(ctx, article, level)
    ctx.mark_dirty(FLOW, article)


def flush(ctx: Ctx, article: str, *, in_till: bool, fortnox_stock_goods: bool) -> None:
    """Write out what each side owes the other, one delta per side."""
    level = _load(ctx, article)
    if level.settled:
        return
    till_value = level.base + level.till_since
    fx_value = level.base + level.fx_since
    new = till_value + fx_value - level.base
    if level.till_since or level.fx_since:
        ctx.txn.put(
            MERGES,
            article,
            {
                "at": ctx.now.isoformat(),
                "base": str(level.base),
                "till": str(till_value),
                "fortnox": str(fx_value),
                "new": str(new),
            },
        )
        ctx.note(
            "stock.merged",
            article=article,
            base=str(level.base),
            till=str(till_value),
            fortnox=str(fx_value),
            new=str(new),
        )
        level.base, level.till_since, level.fx_since = new, ZERO, ZERO
    if level.to_till != 0 and level.till_inflight is None and in_till and not level.blocked_till:
        delta = level.to_till
        cmd = ctx.command(
            AdjustTillStock,
            f"stock.till:{article}",
            AdjustTillStockData(
                article_number=article, delta=delta, expected_level=level.till + delta
            ),
        )
        level.till_inflight = {"id": cmd.id, "delta": str(delta)}
        level.to_till = ZERO
        _remember(ctx, cmd.id, article, cmd.type)
    fortnox_ok = fortnox_stock_goods and not level.blocked_fx
    if level.to_fx != 0 and level.fx_inflight is None and fortnox_ok:
        delta = level.to_fx
        cmd2 = ctx.command(
            ApplyFortnoxStock,
            f"stock.fx:{article}",
            ApplyStockData(article_number=article, delta=delta),
        )
        level.fx_inflight = {"id": cmd2.id, "delta": str(delta)}
        level.to_fx = ZERO
        _remember(ctx, cmd2.id, article, cmd2.type)
    _save(ctx, article, level)


def _remember(ctx: Ctx, command_id: str, article: str, command_type: str) -> None:
    ctx.txn.put("cmd", command_id, {"flow": FLOW, "key": article, "type": command_type})
