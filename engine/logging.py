"""structlog set-up: JSON lines, tenant and message ids as fields, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

REDACTED = "***"
_SECRET_KEYS = re.compile(
    r"(token|secret|password|authorization|api_key|apikey|client_secret|refresh|access|cookie)",
    re.IGNORECASE,
)
_SECRET_VALUES = [
    # HTTP auth schemes are case-insensitive: "bearer x" and "Basic <base64 id:secret>" too.
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)\bBasic\s+[A-Za-z0-9+/=_-]{8,}"),
    re.compile(r"\bks_[A-Za-z0-9_.-]+_[A-Za-z0-9_-]{16,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"),
    re.compile(r"(?i)(refresh_token|access_token|client_secret|code_verifier|password)=[^&\s]+"),
]
#: A secret field inside JSON text (a logged request or response body).
_SECRET_JSON = re.compile(
    r'(?i)("(?:[a-z_]*token|client_secret|secret|password|api_key|authorization)"\s*:\s*)'
    r'"(?:[^"\\]|\\.)*"'
)


def _scrub(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        value = _SECRET_JSON.sub(rf'\1"{REDACTED}"', value)
        for pattern in _SECRET_VALUES:
            value = pattern.sub(REDACTED, value)
        return value
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEYS.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: secret-looking keys lose their values, secret-looking values
    (bearer tokens, JWTs, ingest keys, token form fields) are masked wherever they appear."""
    for key in list(event_dict):
        if _SECRET_KEYS.search(key) and key != "event":
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure(level: str = "INFO", stream: Any = None) -> None:
    logging.basicConfig(format="%(message)s", stream=stream or sys.stderr, level=level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
