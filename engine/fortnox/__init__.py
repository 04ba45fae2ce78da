"""Kassasync's Fortnox client.

Never a duplicate voucher (POSTs are not retried once they may have arrived: UnknownOutcome),
never a lost stock change (read-then-write with the values returned, or idempotent warehouse
documents), never a 429 storm (a per (client, tenant) sliding-window limiter counting at send
time), never a killed refresh token (one refresher per tenant across processes; the rotated token
is saved before use). See docs/fortnox-client.md.
"""

from engine.fortnox.api import FortnoxApi
from engine.fortnox.auth import (
    DEFAULT_SCOPES,
    FortnoxAuth,
    OAuthClient,
    TokenManager,
    consent_url,
)
from engine.fortnox.client import FortnoxClient, LimitedTransport
from engine.fortnox.errors import FortnoxError, LoginExpired, UnknownOutcome
from engine.fortnox.limiter import LimiterRegistry, SlidingWindowLimiter
from engine.fortnox.observability import FortnoxMetrics, NullMetrics, RecordingMetrics
from engine.fortnox.polling import LastModifiedPoller, PollCursor
from engine.fortnox.retry import RetryPolicy
from engine.fortnox.stock import Stock, StockMode
from engine.fortnox.tokens import (
    AppCredentials,
    GrantKind,
    MemoryTokenStore,
    SqliteTokenStore,
    TokenSet,
    TokenStore,
)
from engine.fortnox.topics_feed import MemoryOffsetStore, OffsetStore, TopicEvent, TopicsFeed

__all__ = [
    "DEFAULT_SCOPES",
    "AppCredentials",
    "FortnoxApi",
    "FortnoxAuth",
    "FortnoxClient",
    "FortnoxError",
    "FortnoxMetrics",
    "GrantKind",
    "LastModifiedPoller",
    "LimitedTransport",
    "LimiterRegistry",
    "LoginExpired",
    "MemoryOffsetStore",
    "MemoryTokenStore",
    "NullMetrics",
    "OAuthClient",
    "OffsetStore",
    "PollCursor",
    "RecordingMetrics",
    "RetryPolicy",
    "SlidingWindowLimiter",
    "SqliteTokenStore",
    "Stock",
    "StockMode",
    "TokenManager",
    "TokenSet",
    "TokenStore",
    "TopicEvent",
    "TopicsFeed",
    "UnknownOutcome",
    "consent_url",
]
