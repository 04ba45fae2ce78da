"""Articles: Fortnox is master; the till gets what Fortnox has, minus what it must not have.

What the till holds
    Every Fortnox article that is not deleted in Fortnox, not missing from the last full pass,
    not excluded (its description contains the exclusion marker, ``#E#`` by default) and not
    losing a barcode conflict; with Fortnox's fields and the price from the chosen price list.

Unique barcodes
    The till accepts only unique barcodes. The article that holds a barcode keeps it as long as
    it still has that barcode and is still wanted. A newcomer with the same barcode is not sent:
    it joins a first-come queue for the barcode, is reported (``barcode_conflict``, naming the
    holder), and is admitted automatically when the holder loses the barcode, is excluded, is
    deleted or goes missing. Till-only articles hold their barcodes too. A flush orders its
    commands so that the till never has two articles with one barcode at any moment: removals
    first, then each upsert once its barcode is free in the till (an article about to give up
    that barcode is flushed along with it), and a swap of barcodes is broken by clearing one.

What the till cannot take
    Fortnox accepts values the till does not (a barcode with a space, a control character in a
    description). Such an article is not sent: it is reported for that article
    (``till_refuses_article``, naming the fields and values, and what to fix in Fortnox) and the
    rest of the register goes on syncing. If the till already has the article, it keeps the last
    version it took (and its barcode) until Fortnox has values the till can take again; then the
    article is sent as usual. A record that could not be read at all (``fortnox.record.unreadable``)
    is reported the same way and still counts as present in a full pass.

Till edits
    Fortnox is master: an edit made in the till to a Fortnox article is overwritten at the next
    flush and reported (``till_edit_overwritten``).

Deleted and missing articles (``delete_missing``)
    * An article Kassasync knows from Fortnox always leaves the till when Fortnox deletes it (a
      deletion record) or when a completed full pass does not contain it (missing), whatever
      ``delete_missing`` says.
    * Till-only articles (reported by the till, never seen in Fortnox) are left alone unless
      ``delete_missing`` is on: then every completed full pass removes the till-only articles
      Fortnox does not have. A till-only article that Fortnox later creates under the same number
      is taken over by Fortnox.

Price lists
    A Fortnox record carries the price from one price list. Only the chosen list's price reaches
    the till. When the chosen list changes, an article keeps its till price until its price in the
    new list has been read, so the till never gets a price-less article in between.

Redeliveries and stale records
    A Fortnox record older (by ``seq``) than the last one applied, a deletion or till edit already
    applied, and a full pass that is completed again or unknown are ignored.

State: ``art.fx`` (what Fortnox has, per article), ``art.till`` (what the till has, as far as we
know), ``art.want`` (the decision for the till, with its reason and the barcode it holds or waits
for), ``barcode`` (holder per EAN), ``barcode.wait`` (queue per EAN), ``till.ean`` (which article
has an EAN in the till) and ``till.ean.wait`` (upserts waiting for an EAN to be freed in the till).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from reconcilers import passes, stock
from reconcilers.context import Ctx
from topics.commands import (
    RemoveTillArticle,
    RemoveTillArticleData,
    TillArticle,
    UpsertTillArticle,
    UpsertTillArticleData,
)
from topics.fortnox import FortnoxArticle, Observation, SyncCompletedData, UnreadableData
from topics.outcomes import OutcomeData, OutcomeStatus
from topics.settings import TenantSettings
from topics.till import ArticleEditedData

FLOW = "articles"
FX = "art.fx"
TILL = "art.till"
WANT = "art.want"
BARCODE = "barcode"
WAIT = "barcode.wait"
TILL_EAN = "till.ean"
TILL_EAN_WAIT = "till.ean.wait"
RESOURCE = "articles"

REMOVE_REASONS = ("excluded", "deleted_in_fortnox", "missing_in_fortnox", "barcode_conflict")


# --- Fortnox changes -----------------------------------------------------------------------------


def on_fortnox_article(ctx: Ctx, article: FortnoxArticle, observed: Observation) -> None:
    if not ctx.settings.articles.enabled:
        return
    number = article.article_number
    record = ctx.txn.get(FX, number) or {}
    if ctx.is_repeat(record, "fx", observed.seq):
        ctx.note("article.stale_record", article=number, seq=observed.seq)
        if observed.sync_pass is not None:  # the pass's page showed it present
            passes.listed(ctx, FX, RESOURCE, number, observed.sync_pass, observed.seq)
        return
    ctx.stamp(record, "fx", observed.seq)
    record["seen"] = passes.observed(ctx, RESOURCE, observed.sync_pass)
    dumped = article.model_dump(mode="json")
    prices = dict(record.get("prices", {}))
    price_list = article.price_list or ctx.settings.articles.price_list
    prices[price_list] = dumped["price"]
    changed = (
        record.get("article") != dumped
        or record.get("prices") != prices
        or bool(record.get("deleted"))
    )
    record.update(article=dumped, prices=prices, deleted=None)
    ctx.txn.put(FX, number, record)
    if changed:
        _evaluate(ctx, number)
    if _till_takes_number(number):
        stock.observe_fortnox(ctx, article, observed.seq)
    else:
        ctx.note("article.stock_not_synced", article=number, reason="number_refused_by_till")


def on_unreadable(ctx: Ctx, data: UnreadableData) -> None:
    """Fortnox has the article, but its record could not be read: the till keeps what it has,
    the article is reported, and a full pass under way does not take it for missing."""
    if not ctx.settings.articles.enabled:
        return
    passes.listed(ctx, FX, RESOURCE, data.key, data.observed.sync_pass, data.observed.seq)
    ctx.report(
        f"article:{data.key}", {"kind": "fortnox_record_unreadable", "problem": data.problem}
    )
    ctx.note("article.unreadable", article=data.key, problem=data.problem)


def _till_takes_number(number: str) -> bool:
    try:
        RemoveTillArticleData.model_validate({"article_number": number, "reason": "excluded"})
    except ValidationError:
        return False
    return True


def on_fortnox_deleted(ctx: Ctx, number: str) -> None:
    """Fortnox reports the article deleted."""
    record = ctx.txn.get(FX, number)
    if record is None:
        return
    if ctx.is_repeat(record, "fx"):
        ctx.note("article.stale_record", article=number, seq=None)
        return
    ctx.stamp(record, "fx")
    ctx.txn.put(FX, number, record)
    _gone(ctx, number, "deleted_in_fortnox")


def _gone(ctx: Ctx, number: str, reason: str) -> None:
    record = ctx.txn.get(FX, number)
    if record is None or record.get("deleted"):
        return
    ctx.txn.put(FX, number, {**record, "deleted": reason})
    ctx.note("article.deleted_in_fortnox", article=number, reason=reason)
    _evaluate(ctx, number)


def on_sync_completed(ctx: Ctx, data: SyncCompletedData) -> None:
    """After a full pass: what Fortnox no longer has leaves the till."""
    settings = ctx.settings.articles
    if not settings.enabled:
        return
    if not passes.complete(ctx, RESOURCE, data.sync_pass, data.count):
        return
    for number, record in ctx.txn.scan(FX):
        if passes.missing(record, data):
            _gone(ctx, number, "missing_in_fortnox")
    if settings.delete_missing:
        _remove_till_only(ctx)


def _remove_till_only(ctx: Ctx) -> None:
    """Delete-missing: the articles the till reported that Fortnox has never had leave it."""
    for number, till in ctx.txn.scan(TILL):
        if till.get("sent") is not None and ctx.txn.get(FX, number) is None:
            ctx.txn.put(TILL, number, {**till, "remove": True})
            ctx.note("article.missing_in_fortnox", article=number)
            _evaluate(ctx, number)


def on_settings_changed(ctx: Ctx, old: TenantSettings, new: TenantSettings) -> None:
    """A new price list, exclusion marker or enabling the flow changes what the till wants.
    Delete-missing turned on removes the till-only articles at once, once a full pass has
    shown what Fortnox has: the session's pass for it may reach the reconciler before the
    settings do (on Kafka they travel on different topics), and must not wait six hours."""
    if old.articles == new.articles or not new.articles.enabled:
        return
    for number, _ in ctx.txn.scan(FX):
        _evaluate(ctx, number)
    turned_on = new.articles.delete_missing and not old.articles.delete_missing
    if turned_on and passes.completed_any(ctx, RESOURCE):
        _remove_till_only(ctx)


# --- till events ---------------------------------------------------------------------------------


def on_till_edit(ctx: Ctx, data: ArticleEditedData) -> None:
    """Fortnox is master: a till edit is recorded as the till's state, then overwritten."""
    number = data.article_number
    till = ctx.txn.get(TILL, number) or {"sent": None}
    if ctx.is_repeat(till, "till"):
        ctx.note("article.till_edit_repeated", article=number)
        return
    ctx.stamp(till, "till")
    till["eans"] = sorted(_held(till))
    changes = data.changes.model_dump(mode="json", exclude_none=True)
    sent = dict(till.get("sent") or {"article_number": number, "description": ""})
    sent.update(changes)
    till["sent"] = sent
    held = _held(till)
    if till.get("inflight"):
        # Our command and this edit may reach the till in either order: until a command of
        # ours lands after it, the article may have either barcode, and is sent again.
        till["overlap"] = True
        held |= {changes["ean"]} if "ean" in changes else set()
    elif "ean" in changes:
        held = {changes["ean"]}
    _hold(ctx, number, till, held)
    if ctx.txn.get(FX, number) is None:
        if not ctx.settings.articles.delete_missing:
            till.pop("remove", None)
        ctx.txn.put(TILL, number, till)
        ctx.report(f"article:{number}", {"kind": "till_only_article", "changes": changes})
        ctx.note("article.till_only", article=number, changes=changes)
        _evaluate(ctx, number)
        return
    ctx.txn.put(TILL, number, till)
    ctx.report(f"article:{number}", {"kind": "till_edit_overwritten", "changes": changes})
    ctx.note("article.till_edit_overwritten", article=number, changes=changes)
    ctx.mark_dirty(FLOW, number)


# --- the decision per article ------------------------------------------------------------------


def _price(ctx: Ctx, record: dict[str, Any], previous: dict[str, Any]) -> Any:
    """The chosen list's price; while it is unknown, the price the till already has."""
    prices: dict[str, Any] = record.get("prices", {})
    chosen = ctx.settings.articles.price_list
    if chosen in prices:
        return prices[chosen]
    earlier = previous.get("article") or {}
    return earlier.get("price")


def _desired(ctx: Ctx, number: str, want: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """What the till should have for ``number``, and the barcode that needs."""
    record = ctx.txn.get(FX, number)
    if record is None:
        till = ctx.txn.get(TILL, number) or {}
        sent = till.get("sent")
        if sent is None or till.get("remove"):
            return {"in_till": False, "reason": "missing_in_fortnox"}, None
        return {"in_till": True, "reason": "till_only", "keep": True}, sent.get("ean")
    if record.get("deleted"):
        return {"in_till": False, "reason": record["deleted"]}, None
    article = FortnoxArticle.model_validate(record["article"])
    marker = ctx.settings.articles.exclusion_marker
    if marker and marker in article.description:
        if want.get("reason") != "excluded":
            ctx.note("article.excluded", article=number, marker=marker)
        return {"in_till": False, "reason": "excluded"}, None
    try:
        target = TillArticle.model_validate(
            {
                "article_number": number,
                "description": article.description,
                "ean": article.ean,
                "price": _price(ctx, record, want),
                "vat": article.vat,
                "unit": article.unit,
                "stock_goods": article.stock_goods,
                "active": article.active,
            }
        ).model_dump(mode="json")
    except ValidationError as refused:
        return _refused(ctx, number, article, want, refused)
    return {"in_till": True, "reason": "fortnox", "article": target}, article.ean


#: What a shop can do about each field the till refuses.
_FIX = {
    "ean": "a barcode of letters and digits only (no spaces), at most 30 characters",
    "description": "a description without control characters, at most 200 characters",
    "unit": "a unit without control characters, at most 200 characters",
    "article_number": "an article number of letters, digits and _ + / . - only",
}


def _refused(
    ctx: Ctx,
    number: str,
    article: FortnoxArticle,
    want: dict[str, Any],
    refused: ValidationError,
) -> tuple[dict[str, Any], str | None]:
    """Fortnox has values the till cannot take: report them for this article; the till keeps
    the version it has (with its barcode), or does not get the article yet."""
    fields = sorted({str(e["loc"][0]) for e in refused.errors() if e["loc"]})
    if want.get("reason") != "till_refuses" or want.get("fields") != fields:
        values = article.model_dump(mode="json")
        ctx.report(
            f"article:{number}",
            {
                "kind": "till_refuses_article",
                "fields": fields,
                "values": {f: values.get(f, number) for f in fields},
                "fix": "; ".join(f"{f}: {_FIX[f]}" for f in fields if f in _FIX),
            },
        )
        ctx.note("article.till_refuses", article=number, fields=fields)
    till = ctx.txn.get(TILL, number) or {}
    sent = till.get("sent")
    if sent is not None and not till.get("remove"):
        return {
            "in_till": True,
            "reason": "till_refuses",
            "fields": fields,
            "keep": True,
        }, sent.get("ean")
    return {"in_till": False, "reason": "till_refuses", "fields": fields}, None


def _evaluate(ctx: Ctx, number: str) -> None:
    want = ctx.txn.get(WANT, number) or {}
    held = want.get("ean_held")
    waiting = want.get("ean_waiting")
    new_want, ean = _desired(ctx, number, want)
    # Leave the queue and the barcode this article no longer claims.
    if waiting and waiting != ean:
        _leave_queue(ctx, waiting, number)
        waiting = None
    if held and held != ean:
        ctx.txn.put(WANT, number, {**new_want, "ean_held": None, "ean_waiting": waiting})
        _release(ctx, held, number)
        held = None
    if ean is not None and held != ean:
        holder = ctx.txn.get(BARCODE, ean)
        if holder is None or holder["holder"] == number:
            ctx.txn.put(BARCODE, ean, {"holder": number})
            held = ean
        elif new_want.get("keep"):
            # The till already has this till-only article with the barcode: nothing to queue.
            ctx.note("article.till_only_barcode_taken", article=number, ean=ean)
        else:
            _join_queue(ctx, ean, number)
            waiting = ean
            if want.get("reason") != "barcode_conflict" or want.get("holder") != holder["holder"]:
                ctx.note(
                    "article.barcode_conflict", article=number, ean=ean, holder=holder["holder"]
                )
                ctx.report(
                    f"article:{number}",
                    {"kind": "barcode_conflict", "ean": ean, "holder": holder["holder"]},
                )
            new_want = {"in_till": False, "reason": "barcode_conflict", "holder": holder["holder"]}
    if held is not None and held == waiting:
        _leave_queue(ctx, held, number)
        waiting = None
    final = {**new_want, "ean_held": held, "ean_waiting": waiting}
    if final != want:
        ctx.txn.put(WANT, number, final)
    if not new_want.get("keep"):
        ctx.mark_dirty(FLOW, number)


def _join_queue(ctx: Ctx, ean: str, number: str) -> None:
    queue = list((ctx.txn.get(WAIT, ean) or {}).get("queue", []))
    if number not in queue:
        queue.append(number)
        ctx.txn.put(WAIT, ean, {"queue": queue})


def _leave_queue(ctx: Ctx, ean: str, number: str) -> None:
    queue = list((ctx.txn.get(WAIT, ean) or {}).get("queue", []))
    if number not in queue:
        return
    queue.remove(number)
    if queue:
        ctx.txn.put(WAIT, ean, {"queue": queue})
    else:
        ctx.txn.delete(WAIT, ean)


def _release(ctx: Ctx, ean: str, number: str) -> None:
    """``number`` gives up ``ean``: the first article waiting for it is admitted."""
    holder = ctx.txn.get(BARCODE, ean)
    if holder is None or holder["holder"] != number:
        return
    ctx.txn.delete(BARCODE, ean)
    while ctx.txn.get(BARCODE, ean) is None:
        queue = (ctx.txn.get(WAIT, ean) or {}).get("queue", [])
        if not queue:
            return
        successor = queue[0]
        ctx.note("article.barcode_admitted", article=successor, ean=ean, released_by=number)
        _evaluate(ctx, successor)
        if ctx.txn.get(BARCODE, ean) is None:
            _leave_queue(ctx, ean, successor)
    # The articles still waiting now wait for the new holder: their reports name it.
    new_holder = ctx.txn.get(BARCODE, ean)
    for waiting in (ctx.txn.get(WAIT, ean) or {}).get("queue", []):
        want = ctx.txn.get(WANT, waiting)
        if new_holder is None or want is None or want.get("holder") == new_holder["holder"]:
            continue
        ctx.txn.put(WANT, waiting, {**want, "holder": new_holder["holder"]})
        ctx.report(
            f"article:{waiting}",
            {"kind": "barcode_conflict", "ean": ean, "holder": new_holder["holder"]},
        )
        ctx.note("article.barcode_conflict", article=waiting, ean=ean, holder=new_holder["holder"])


# --- flush ---------------------------------------------------------------------------------


class _Flush:
    """One flush: the commands that bring the till to what is wanted, in a safe order."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        #: Article -> the article to upsert, or None to remove it.
        self.actions: dict[str, dict[str, Any] | None] = {}
        self.reasons: dict[str, str] = {}
        self.done: set[str] = set()

    def add(self, number: str) -> bool:
        """Plan ``number`` if the till differs from what is wanted; True if it has work."""
        if number in self.actions:
            return True
        if number in self.done:
            return False
        ctx = self.ctx
        want = ctx.txn.get(WANT, number)
        if want is None or want.get("keep"):
            return False
        till = ctx.txn.get(TILL, number) or {}
        sent = till.get("sent")
        if want["in_till"]:
            if sent == want["article"] and not till.get("stale"):
                return False
            self.actions[number] = want["article"]
            return True
        if sent is None:
            return False
        reason = str(want.get("reason", "deleted_in_fortnox"))
        self.actions[number] = None
        self.reasons[number] = reason if reason in REMOVE_REASONS else "deleted_in_fortnox"
        return True

    def remove(self, number: str) -> None:
        cmd = self.ctx.command(
            RemoveTillArticle,
            f"article.remove:{number}",
            RemoveTillArticleData.model_validate(
                {"article_number": number, "reason": self.reasons[number]}
            ),
        )
        _remember(self.ctx, cmd.id, number, cmd.type)
        _set_sent(self.ctx, number, None, cmd.id)
        del self.actions[number]
        self.done.add(number)

    def upsert(self, number: str, article: dict[str, Any]) -> None:
        _send_upsert(self.ctx, number, article)
        del self.actions[number]
        self.done.add(number)

    def run(self) -> None:
        ctx = self.ctx
        for number in sorted(n for n, a in self.actions.items() if a is None):
            self.remove(number)
        released: set[str] = set()
        while self.actions:
            progressed = False
            for number in sorted(self.actions):
                article = self.actions.get(number)
                if article is None:
                    continue  # removed along the way below
                ean = article.get("ean")
                holder = _till_holder(ctx, ean, exclude=number) if ean else None
                if holder is None:
                    self.upsert(number, article)
                elif holder in self.actions:
                    continue
                elif self.add(holder):
                    if self.actions[holder] is None:
                        self.remove(holder)
                else:
                    # The till article with this barcode keeps it (the till told us so, or it is
                    # a till-only article): wait until the till frees the barcode.
                    _wait_for_till(ctx, str(ean), number)
                    del self.actions[number]
                progressed = True
            if not progressed:
                number = _cycle_member(ctx, self.actions)
                if number in released:
                    # Cannot happen while state is consistent; never loop: let the till decide.
                    for waiting, article in sorted(self.actions.items()):
                        assert article is not None
                        _wait_for_till(ctx, str(article["ean"]), waiting)
                    self.actions.clear()
                    return
                released.add(number)
                article = self.actions[number]
                assert article is not None
                # A swap (A takes B's barcode while B takes A's): free one barcode first.
                _send_upsert(ctx, number, {**article, "ean": None}, suffix=":release")


def flush(ctx: Ctx, numbers: list[str]) -> None:
    """Bring the till to what is wanted, in an order that never gives two articles one barcode."""
    plan = _Flush(ctx)
    for number in numbers:
        plan.add(number)
    plan.run()


def _cycle_member(ctx: Ctx, actions: dict[str, dict[str, Any] | None]) -> str:
    """Every planned upsert waits for a barcode another planned upsert holds: find a cycle."""
    number = min(actions)
    visited: set[str] = set()
    while number not in visited:
        visited.add(number)
        article = actions[number]
        assert article is not None and article.get("ean")
        holder = _till_holder(ctx, article["ean"], exclude=number)
        assert holder is not None and holder in actions
        number = holder
    return number


def _till_holder(ctx: Ctx, ean: str, exclude: str) -> str | None:
    """An article other than ``exclude`` that may have ``ean`` in the till."""
    holders = (ctx.txn.get(TILL_EAN, ean) or {}).get("articles", [])
    others = [h for h in holders if h != exclude]
    return others[0] if others else None


def _wait_for_till(ctx: Ctx, ean: str, number: str) -> None:
    waiting = list((ctx.txn.get(TILL_EAN_WAIT, ean) or {}).get("articles", []))
    if number not in waiting:
        waiting.append(number)
        ctx.txn.put(TILL_EAN_WAIT, ean, {"articles": waiting})
    ctx.note("article.till_barcode_busy", article=number, ean=ean)


def _held(till: dict[str, Any]) -> set[str]:
    """The barcodes the till may have for this article."""
    if "eans" in till:
        return set(till["eans"])
    ean = (till.get("sent") or {}).get("ean")
    return {ean} if ean else set()


def _hold(ctx: Ctx, number: str, till: dict[str, Any], eans: set[str]) -> None:
    """Record that the till may have ``eans`` (and no other barcode) for ``number``."""
    old = _held(till)
    for ean in sorted(old - eans):
        holders = [h for h in (ctx.txn.get(TILL_EAN, ean) or {}).get("articles", []) if h != number]
        if holders:
            ctx.txn.put(TILL_EAN, ean, {"articles": holders})
            continue
        ctx.txn.delete(TILL_EAN, ean)
        waiting = (ctx.txn.get(TILL_EAN_WAIT, ean) or {}).get("articles", [])
        ctx.txn.delete(TILL_EAN_WAIT, ean)
        for other in waiting:
            ctx.mark_dirty(FLOW, other)
    for ean in sorted(eans - old):
        holders = list((ctx.txn.get(TILL_EAN, ean) or {}).get("articles", []))
        if number not in holders:
            ctx.txn.put(TILL_EAN, ean, {"articles": [*holders, number]})
    till["eans"] = sorted(eans)


def _set_sent(ctx: Ctx, number: str, sent: dict[str, Any] | None, command_id: str) -> None:
    """We sent a command that leaves the till with ``sent`` for ``number``. Till commands are
    carried out in the order they are sent, so every later command finds it done."""
    till = ctx.txn.get(TILL, number) or {}
    till["eans"] = sorted(_held(till))
    till["fallback"] = sorted(_held(till) | set(till.get("fallback", [])))
    till["inflight"] = [*till.get("inflight", []), command_id]
    till["sent"] = sent
    till.pop("stale", None)
    ean = None if sent is None else sent.get("ean")
    _hold(ctx, number, till, {ean} if ean else set())
    ctx.txn.put(TILL, number, till)


def _remember(ctx: Ctx, command_id: str, number: str, command_type: str) -> None:
    ctx.txn.put("cmd", command_id, {"flow": FLOW, "key": number, "type": command_type})


def on_outcome(ctx: Ctx, number: str, outcome: OutcomeData) -> None:
    till = ctx.txn.get(TILL, number)
    if till is None or outcome.command_id not in till.get("inflight", []):
        return
    if outcome.status is OutcomeStatus.RETRYING:
        return
    till["inflight"] = [c for c in till["inflight"] if c != outcome.command_id]
    if outcome.status is OutcomeStatus.DONE:
        if not till["inflight"]:
            till.pop("fallback", None)
            if till.pop("overlap", None):
                till["stale"] = True
                ctx.mark_dirty(FLOW, number)
        ctx.txn.put(TILL, number, till)
        return
    # Not carried out: the till may still have what it had before; send the article again.
    _hold(ctx, number, till, _held(till) | set(till.get("fallback", [])))
    if not till["inflight"]:
        till.pop("fallback", None)
    if till.get("sent") is None:
        till["sent"] = {"article_number": number, "description": "", "unknown": True}
    till["stale"] = True
    ctx.txn.put(TILL, number, till)
    # Sent again with the article's next change, on resume (skipped) or by an operator's retry
    # of the dead letter (rejected); not in a loop while the tenant is paused.
    ctx.report(f"article:{number}", {"kind": "till_write_failed", "status": outcome.status.value})


def retry(ctx: Ctx, number: str) -> None:
    ctx.mark_dirty(FLOW, number)


def _send_upsert(ctx: Ctx, number: str, article: dict[str, Any], suffix: str = "") -> None:
    cmd = ctx.command(
        UpsertTillArticle,
        f"article.upsert:{number}{suffix}",
        UpsertTillArticleData(article=TillArticle.model_validate(article)),
    )
    _remember(ctx, cmd.id, number, cmd.type)
    first_time = (ctx.txn.get(TILL, number) or {}).get("sent") is None
    _set_sent(ctx, number, article, cmd.id)
    if first_time:
        # Stock owed to the till for this article can go now that the till has it.
        ctx.mark_dirty(stock.FLOW, number)


def in_till(ctx: Ctx, number: str) -> bool:
    till = ctx.txn.get(TILL, number)
    return till is not None and till.get("sent") is not None


def fortnox_stock_goods(ctx: Ctx, number: str) -> bool:
    record = ctx.txn.get(FX, number)
    if record is None or record.get("deleted") or record.get("article") is None:
        return False
    return bool(record["article"].get("stock_goods"))
