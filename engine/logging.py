"""structlog set-up: JSON lines, tenant and message ids as fields, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

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
    re.compile(r"(?i)\bkassasync_session=[^;\s'\"]+"),
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


class _Stderr(logging.StreamHandler[Any]):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a test's capture stream
    comes and goes; a handler holding the old one would write to a closed file)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        """Ignored (logging's own set-up assigns it): the stream is always ``sys.stderr``."""


class _CurrentStderr:
    """A file for structlog's printer that is whatever ``sys.stderr`` is at each write, for the
    same reason as ``_Stderr``: structlog's events must not outlive a stream that was closed (a
    closed capture stream made every later event raise, and faust's revocation callback with it,
    which stopped the Kafka worker)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


#: Libraries that log every request at INFO and raw headers (cookies, tokens) at DEBUG: kept at
#: WARNING whatever the level, so the JSON log is not flooded and never carries their headers.
CHATTY = ("httpx", "httpcore", "uvicorn.access", "aiokafka", "kafka")


def configure(level: str = "INFO", stream: Any = None) -> None:
    """JSON lines on ``stream`` (default stderr) for structlog's events and for every standard
    ``logging`` record (httpx, uvicorn, faust…) alike: one format, one redaction."""
    level = level.upper()
    numeric = logging.getLevelName(level)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler: logging.Handler = _Stderr() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    handler._kassasync = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # Replace only the handler an earlier call installed (pytest's capture handlers stay).
    for old in [h for h in root.handlers if getattr(h, "_kassasync", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Other libraries' records join the JSON log from WARNING up; Kassasync's own events
    # (structlog) follow ``level``.
    root.setLevel(max(numeric, logging.WARNING))
    # Kassasync's own stdlib loggers (the till-PC agent's ``kassasync.agent``) follow ``level``.
    logging.getLogger("kassasync").setLevel(numeric)
    for name in CHATTY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[*shared, redact, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # structlog's printer only writes and flushes: the stand-in is a TextIO for it.
        logger_factory=structlog.PrintLoggerFactory(file=stream or cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )
