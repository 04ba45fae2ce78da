"""When a Fortnox request may be tried again, and how long to wait first.

* Idempotent requests (GET, DELETE, PUT of absolute values) are retried on 429, 5xx, timeouts
  and connection failures, with exponential backoff and full jitter.
* Non-idempotent requests (POST of vouchers, orders, customers without a number, invoice
  payments; PUT actions that create something such as ``/createinvoice``) are retried only when
  the request provably never reached Fortnox: a connection that could not be opened, or a 429 /
  401 answer (Fortnox refused it without doing it). Any other failure after the request may have
  been received raises :class:`~engine.fortnox.errors.UnknownOutcome`.
* Absolute stock writes (``PUT /3/articles/{n}`` carrying ``QuantityInStock``) are never repeated
  by the HTTP layer at all, not even after a 429: the value was computed from a read, and sending
  it again later would overwrite whatever Fortnox (its web shop, say) changed meanwhile. A failure
  is raised at once (:class:`~engine.fortnox.errors.UnknownOutcome` when the request may have
  arrived), and the stock executor reads again and decides from its recorded intent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

#: PUT actions that create a document; never blindly repeated.
NON_IDEMPOTENT_PUT_ACTIONS = frozenset({"createinvoice", "createorder", "credit"})

#: Transport failures raised before any byte of the request was written.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


#: The resource whose ``QuantityInStock`` is an absolute value (without Fortnox Lager).
_ARTICLE_PATH_PREFIX = "/3/articles/"


def is_absolute_stock_write(method: str, path: str, body: object) -> bool:
    """True for ``PUT /3/articles/{n}`` whose body sets ``QuantityInStock``: a value computed
    from an earlier read, which must never be sent again without reading again."""
    if method.upper() != "PUT":
        return False
    bare = path.split("?")[0].rstrip("/")
    if not bare.startswith(_ARTICLE_PATH_PREFIX) or "/" in bare[len(_ARTICLE_PATH_PREFIX) :]:
        return False
    article = body.get("Article") if isinstance(body, dict) else None
    return isinstance(article, dict) and "QuantityInStock" in article


def is_idempotent(method: str, path: str) -> bool:
    method = method.upper()
    if method in {"GET", "HEAD", "OPTIONS", "DELETE"}:
        return True
    if method == "PUT":
        last = path.split("?")[0].rstrip("/").rsplit("/", 1)[-1].lower()
        return last not in NON_IDEMPOTENT_PUT_ACTIONS
    return False


@dataclass
class RetryPolicy:
    """Backoff settings. ``attempts`` counts tries in total, the first included."""

    attempts: int = 5
    rate_limited_attempts: int = 8
    base_delay: float = 0.5
    rate_limited_base_delay: float = 1.0
    max_delay: float = 20.0
    #: After a 429, hold every request for this (client, tenant) for this long; None: one
    #: window of the tenant's limiter (Fortnox's 5 s, or the server's declared window).
    rate_limit_pause: float | None = None
    random: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def backoff(self, attempt: int, *, rate_limited: bool = False) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
        base = self.rate_limited_base_delay if rate_limited else self.base_delay
        ceiling = min(self.max_delay, base * 2 ** max(0, attempt - 1))
        return self.random(0.0, ceiling)

    def allows(self, attempt: int, *, rate_limited: bool = False) -> bool:
        limit = self.rate_limited_attempts if rate_limited else self.attempts
        return attempt < limit
