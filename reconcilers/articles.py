"""Articles: Fortnox is master; the till gets what Fortnox has, minus what it must not have.

An article is wanted in the till unless it is deleted or missing in Fortnox, its description
contains the exclusion marker (``#E#``), or its barcode belongs to another till article. Barcodes
are unique in the till: the article that holds a barcode keeps it; a newcomer with the same
barcode waits in a queue (reported), and is admitted automatically when the holder loses the
barcode, is excluded or is deleted. Till-side edits are overwritten and reported.

State: ``art.fx`` (what Fortnox has), ``art.till`` (what the till has, as far as we know),
``art.want`` (the decision for the till, with its reason), ``barcode`` (holder per EAN) and
``barcode.wait`` (queue per EAN).
"""

from __future__ import annotations

from typing import Any

from reconcilers import stock
from reconcilers.context import Ctx
from topics.commands import (
    RemoveTillArticle,
    RemoveTillArticleData,
    TillArticle,
    UpsertTillArticle,
    UpsertTillArticleData,
)
from topics.fortnox import FortnoxArticle, Observation, SyncCompletedData
from topics.till import ArticleEditedData

FLOW = "articles"
FX = "art.fx"
TILL = "art.till"
WANT = "art.want"
BARCODE = "barcode"
WAIT = "barcode.wait"


def _till_article(article: FortnoxArticle) -> dict[str, Any]:
    return TillArticle(
        article_number=article.article_number,
        description=article.description,
        ean=article.ean,
        price=article.price,
        vat=article.vat,
        unit=article.unit,
        stock_goods=article.stock_goods,
        active=article.active,
    ).model_dump(mode="json")


def on_fortnox_article(ctx: Ctx, article: FortnoxArticle, observed: Observation) -> None:
    if not ctx.settings.articles.enabled:
        return
    number = article.article_number
    record = {"article": article.model_dump(mode="json"), "pass": observed.sync_pass}
    previous = ctx.txn.get(FX, number)
    ctx.txn.put(FX, number, record)
    if previous is None or previous.get("article") != record["article"] or previous.get("deleted"):
        _evaluate(ctx, number)
    stock.observe_fortnox(ctx, article, observed.seq)


def on_fortnox_deleted(ctx: Ctx, number: str, reason: str = "deleted_in_fortnox") -> None:
    record = ctx.txn.get(FX, number)
    if record is None or record.get("deleted"):
        return
    ctx.txn.put(FX, number, {**record, "deleted": reason})
    ctx.note("article.deleted_in_fortnox", article=number, reason=reason)
    _evaluate(ctx, number)


def on_sync_completed(ctx: Ctx, data: SyncCompletedData) -> None:
    """After a full pass: what Fortnox no longer has leaves the till."""
    for number, record in ctx.txn.scan(FX):
        if record.get("deleted") or record.get("pass") == data.sync_pass:
            continue
        on_fortnox_deleted(ctx, number, reason="missing_in_fortnox")
    if not ctx.settings.articles.delete_missing:
        return
    for number, record in ctx.txn.scan(TILL):
        if record.get("sent") is not None and ctx.txn.get(FX, number) is None:
            ctx.txn.put(WANT, number, {"in_till": False, "reason": "missing_in_fortnox"})
            ctx.mark_dirty(FLOW, number)


def on_till_edit(ctx: Ctx, data: ArticleEditedData) -> None:
    """Fortnox is master: a till edit is recorded as the till's state, then overwritten."""
    number = data.article_number
    till = ctx.txn.get(TILL, number) or {"sent": None}
    sent = dict(till.get("sent") or {"article_number": number, "description": ""})
    changes = data.changes.model_dump(mode="json", exclude_none=True)
    sent.update(changes)
    _set_sent(ctx, number, sent)
    known = ctx.txn.get(FX, number) is not None
    ctx.report(
        f"article:{number}",
        {"kind": "till_edit_overwritten" if known else "till_only_article", "changes": changes},
    )
    ctx.note("article.till_edit_overwritten", article=number, changes=changes, known=known)
    if ctx.txn.get(WANT, number) is None and not known:
        return
    ctx.mark_dirty(FLOW, number)


# --- the decision per article ------------------------------------------------------------------


def _evaluate(ctx: Ctx, number: str) -> None:
    record = ctx.txn.get(FX, number)
    want = ctx.txn.get(WANT, number) or {}
    held = want.get("ean_held")
    waiting = want.get("ean_waiting")
    article = None if record is None else FortnoxArticle.model_validate(record["article"])
    marker = ctx.settings.articles.exclusion_marker
    new_want: dict[str, Any]
    if article is None or record is None or record.get("deleted"):
        reason = record.get("deleted") if record else "deleted_in_fortnox"
        new_want = {"in_till": False, "reason": reason}
    elif marker and marker in article.description:
        new_want = {"in_till": False, "reason": "excluded"}
        if want.get("reason") != "excluded":
            ctx.note("article.excluded", article=number, marker=marker)
    else:
        new_want = {"in_till": True, "reason": "fortnox", "article": _till_article(article)}
    ean = article.ean if new_want["in_till"] and article is not None else None
    # Leave barcodes and queues this article no longer claims.
    if waiting and waiting != ean:
        _leave_queue(ctx, waiting, number)
        waiting = None
    if held and held != ean:
        ctx.txn.put(WANT, number, {**new_want, "ean_held": None, "ean_waiting": waiting})
        _release(ctx, held, number)
        held = None
    if ean is not None and held != ean:
        holder = ctx.txn.get(BARCODE, ean)
        if holder is None:
            ctx.txn.put(BARCODE, ean, {"holder": number})
            held = ean
        else:
            _join_queue(ctx, ean, number)
            waiting = ean
            ctx.note("article.barcode_conflict", article=number, ean=ean, holder=holder["holder"])
            ctx.report(
                f"article:{number}",
                {"kind": "barcode_conflict", "ean": ean, "holder": holder["holder"]},
            )
            new_want = {"in_till": False, "reason": "barcode_conflict", "holder": holder["holder"]}
    if ean is not None and held == ean and waiting == ean:
        _leave_queue(ctx, ean, number)
        waiting = None
    ctx.txn.put(WANT, number, {**new_want, "ean_held": held, "ean_waiting": waiting})
    ctx.mark_dirty(FLOW, number)


def _join_queue(ctx: Ctx, ean: str, number: str) -> None:
    queue = list((ctx.txn.get(WAIT, ean) or {}).get("queue", []))
    if number not in queue:
        queue.append(number)
    ctx.txn.put(WAIT, ean, {"queue": queue})


def _leave_queue(ctx: Ctx, ean: str, number: str) -> None:
    queue = [n for n in (ctx.txn.get(WAIT, ean) or {}).get("queue", []) if n != number]
    if queue:
        ctx.txn.put(WAIT, ean, {"queue": queue})
    else:
        ctx.txn.delete(WAIT, ean)


def _release(ctx: Ctx, ean: str, number: str) -> None:
    holder = ctx.txn.get(BARCODE, ean)
    if holder is None or holder["holder"] != number:
        return
    ctx.txn.delete(BARCODE, ean)
    queue = (ctx.txn.get(WAIT, ean) or {}).get("queue", [])
    if queue:
        successor = queue[0]
        ctx.note("article.barcode_admitted", article=successor, ean=ean, released_by=number)
        _evaluate(ctx, successor)


# --- flush ---------------------------------------------------------------------------------


def flush(ctx: Ctx, numbers: list[str]) -> None:
    """Bring the till to what is wanted, in an order that never gives two articles one barcode."""
    removes: list[tuple[str, str]] = []
    upserts: dict[str, dict[str, Any]] = {}
    for number in numbers:
        want = ctx.txn.get(WANT, number)
        till = ctx.txn.get(TILL, number) or {"sent": None}
        sent = till.get("sent")
        if want is None:
            continue
        if want["in_till"]:
            if sent != want["article"]:
                upserts[number] = want["article"]
        elif sent is not None:
            removes.append((number, str(want.get("reason", "deleted_in_fortnox"))))
    for number, reason in removes:
        ctx.command(
            RemoveTillArticle,
            f"article.remove:{number}",
            RemoveTillArticleData(article_number=number, reason=_remove_reason(reason)),
        )
        _set_sent(ctx, number, None)
    # Who holds which barcode in the till right now (after the removals above).
    pending = dict(upserts)
    while pending:
        progressed = False
        for number in list(pending):
            target = pending[number]
            ean = target.get("ean")
            if ean is None or _till_holder(ctx, ean, exclude=number) is None:
                _send_upsert(ctx, number, target)
                del pending[number]
                progressed = True
        if not progressed:
            # A swap (A takes B's barcode while B takes A's): free one barcode first.
            number = next(iter(pending))
            _send_upsert(ctx, number, {**pending[number], "ean": None}, suffix=":release")


def _till_holder(ctx: Ctx, ean: str, exclude: str) -> str | None:
    holder = ctx.txn.get("till.ean", ean)
    if holder is None or holder["article"] == exclude:
        return None
    return str(holder["article"])


def _set_sent(ctx: Ctx, number: str, sent: dict[str, Any] | None) -> None:
    till = ctx.txn.get(TILL, number) or {}
    old = till.get("sent") or {}
    old_ean = old.get("ean")
    if old_ean:
        holder = ctx.txn.get("till.ean", old_ean)
        if holder is not None and holder["article"] == number:
            ctx.txn.delete("till.ean", old_ean)
    if sent is not None and sent.get("ean"):
        ctx.txn.put("till.ean", sent["ean"], {"article": number})
    ctx.txn.put(TILL, number, {**till, "sent": sent})


def _send_upsert(ctx: Ctx, number: str, article: dict[str, Any], suffix: str = "") -> None:
    ctx.command(
        UpsertTillArticle,
        f"article.upsert:{number}{suffix}",
        UpsertTillArticleData(article=TillArticle.model_validate(article)),
    )
    first_time = (ctx.txn.get(TILL, number) or {}).get("sent") is None
    _set_sent(ctx, number, article)
    if first_time:
        # Stock owed to the till for this article can go now that the till has it.
        ctx.mark_dirty(stock.FLOW, number)


def _remove_reason(reason: str) -> Any:
    allowed = {"excluded", "deleted_in_fortnox", "missing_in_fortnox", "barcode_conflict"}
    return reason if reason in allowed else "deleted_in_fortnox"


def in_till(ctx: Ctx, number: str) -> bool:
    till = ctx.txn.get(TILL, number)
    return till is not None and till.get("sent") is not None


def fortnox_stock_goods(ctx: Ctx, number: str) -> bool:
    record = ctx.txn.get(FX, number)
    if record is None or record.get("deleted"):
        return False
    return bool(record["article"].get("stock_goods"))
