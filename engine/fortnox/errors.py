"""Typed Fortnox failures, parsed from any of Fortnox's error shapes and mapped to shop errors.

Fortnox answers errors in several shapes:

* ``{"ErrorInformation": {"Error": 1, "Message": "...", "Code": 2000428}}`` (PascalCase, 404s)
* ``{"ErrorInformation": {"error": 1, "message": "...", "code": 2000587}}`` (lower case, 400s)
* ``{"message": "unauthorized"}`` (401: expired or invalid bearer token)
* ``{"error": "period_locked", "message": "...", "id": "..."}`` (``/api/warehouse`` services)
* ``{"error": "invalid_grant", "error_description": "..."}`` (the OAuth token endpoint)

:func:`parse_error_body` reads them all into :class:`ErrorInfo`; :func:`classify` turns one into
the most specific :class:`FortnoxError` subclass, and every error knows its shop-facing kind.
No error message or ``repr`` ever contains a token or secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from topics.errors import ErrorKind, ShopError, shop_error


@dataclass(frozen=True)
class ErrorInfo:
    """What Fortnox said, whatever the casing or shape."""

    status: int
    code: int | None = None
    message: str = ""
    error: str | None = None  # string error codes (warehouse API, OAuth)


def _ci_get(data: Mapping[str, Any], *names: str) -> Any:
    lowered = {str(k).lower(): v for k, v in data.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def parse_error_body(status: int, body: bytes | str | Mapping[str, Any] | None) -> ErrorInfo:
    """Read any Fortnox error body into an :class:`ErrorInfo` (never raises)."""
    data: Any = body
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body) if body else None
        except ValueError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return ErrorInfo(status=status, message=text.strip()[:500])
    if not isinstance(data, Mapping):
        return ErrorInfo(status=status)
    inner = _ci_get(data, "ErrorInformation")
    source: Mapping[str, Any] = inner if isinstance(inner, Mapping) else data
    code = _as_int(_ci_get(source, "Code"))
    message = _ci_get(source, "Message", "error_description")
    error = _ci_get(source, "error")
    error_text = error if isinstance(error, str) and _as_int(error) is None else None
    return ErrorInfo(
        status=status,
        code=code,
        message=str(message) if message is not None else "",
        error=error_text,
    )


class FortnoxError(Exception):
    """Base of every failure raised by the Fortnox client.

    ``details`` are plain strings used to fill the shop-facing text (account number, series,
    date, ...). They never hold token or secret values.
    """

    kind: ClassVar[ErrorKind] = ErrorKind.FORTNOX_REJECTED

    def __init__(
        self,
        message: str,
        *,
        tenant: str | None = None,
        info: ErrorInfo | None = None,
        method: str | None = None,
        path: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.tenant = tenant
        self.info = info
        self.method = method
        self.path = path
        self.details: dict[str, str] = {
            k: str(v) for k, v in (details or {}).items() if v is not None
        }

    @property
    def status(self) -> int | None:
        return self.info.status if self.info else None

    @property
    def code(self) -> int | None:
        return self.info.code if self.info else None

    def shop_error(self) -> ShopError:
        """The error in the shop's words, with the fix."""
        fields: dict[str, object] = {"detail": self._detail(), "tenant": self.tenant}
        fields.update(self.details)
        return shop_error(self.kind, **fields)

    def _detail(self) -> str:
        parts = [self.message]
        if self.info and self.info.code:
            parts.append(f"(Fortnox code {self.info.code})")
        return " ".join(parts)

    def __str__(self) -> str:
        where = f" [{self.method} {self.path}]" if self.method and self.path else ""
        code = f" code={self.info.code}" if self.info and self.info.code else ""
        status = f" status={self.info.status}" if self.info else ""
        return f"{self.message}{where}{status}{code}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, tenant={self.tenant!r})"


# --- authentication --------------------------------------------------------------------------


class AuthError(FortnoxError):
    pass


class LoginExpired(AuthError):
    """The refresh token is used up or the consent revoked: a person must reconnect."""

    kind = ErrorKind.LOGIN_EXPIRED


class NotConnected(LoginExpired):
    """No Fortnox tokens were ever stored for the tenant: its consent link was not followed."""

    kind = ErrorKind.NOT_CONNECTED


class ConsentRevoked(LoginExpired):
    """Fortnox refused a refresh token younger than 45 days (or a service account's client
    credentials): the consent was withdrawn in Fortnox."""

    kind = ErrorKind.CONSENT_REVOKED


class IntegrationDeactivated(AuthError):
    """The operator deactivated the tenant's Fortnox integration: nothing runs until it is
    activated again and the shop approves Kassasync anew."""

    kind = ErrorKind.PAUSED_BY_OPERATOR

    def _detail(self) -> str:
        return "the Fortnox integration of this shop is deactivated"


class AppCredentialsInvalid(AuthError):
    """Fortnox rejected our client id or client secret (``invalid_client``)."""

    kind = ErrorKind.FORTNOX_REJECTED


class TokenRefreshBusy(AuthError):
    """Another process held the refresh lease for too long; try again later."""

    kind = ErrorKind.FORTNOX_UNAVAILABLE


class ConsentError(AuthError):
    """The browser consent did not complete (denied, wrong state, timed out)."""

    kind = ErrorKind.LOGIN_EXPIRED


# --- transport and availability ----------------------------------------------------------------


class FortnoxUnavailable(FortnoxError):
    """Fortnox did not answer usefully (5xx, timeouts, rate limit) even after retries."""

    kind = ErrorKind.FORTNOX_UNAVAILABLE


class RateLimited(FortnoxUnavailable):
    pass


class ServerError(FortnoxUnavailable):
    pass


class TransportFailure(FortnoxUnavailable):
    pass


class UnknownOutcome(FortnoxUnavailable):
    """A non-idempotent request may or may not have taken effect at Fortnox.

    The request was (or may have been) received but no answer came back. Retrying blindly could
    create a duplicate, so the caller must look first (find the order by external reference,
    scan the voucher series, ...). ``payload`` is what was attempted.
    """

    def __init__(
        self,
        message: str,
        *,
        tenant: str | None = None,
        method: str | None = None,
        path: str | None = None,
        params: Mapping[str, Any] | None = None,
        payload: Any = None,
        cause: str = "",
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, tenant=tenant, method=method, path=path, details=details)
        self.params = dict(params or {})
        self.payload = payload
        self.cause = cause


class Stopping(Exception):
    """The engine is stopping: a request waited (a retry's backoff, the rate limiter) and
    was not sent, or not sent again, so that the stop is not held up by a wait for Fortnox.

    What is known of the request is what the attempts before the wait showed: the client
    retries a non-idempotent request only when Fortnox provably did not apply it (a 429, a
    connection never opened), so such a request was not applied (an idempotent one may have
    been; running it again is harmless). Not a :class:`FortnoxError` on purpose: no
    handler of Fortnox's failures may take it for one (settle a command as failed, count it
    against Fortnox's breaker, report a stock write from it). It ends the session's work in
    hand; the command it was for is left as it was and runs again after the next start.
    """

    def __init__(self, tenant: str, waiting: str) -> None:
        super().__init__(f"stopping: no more waiting for Fortnox ({waiting}) for {tenant}")
        self.tenant = tenant
        self.waiting = waiting


# --- Fortnox said no ---------------------------------------------------------------------------


class FortnoxApiError(FortnoxError):
    """Fortnox answered with an error (an ``ErrorInformation`` or similar)."""


class ValidationFailed(FortnoxApiError):
    kind = ErrorKind.FORTNOX_REJECTED


class NotFound(FortnoxApiError):
    kind = ErrorKind.FORTNOX_REJECTED


class AlreadyExists(FortnoxApiError):
    """E.g. 2000637: the customer number is used (or was used and deleted)."""

    kind = ErrorKind.FORTNOX_REJECTED


class AccountMissing(FortnoxApiError):
    kind = ErrorKind.ACCOUNT_MISSING


class AccountInactive(FortnoxApiError):
    kind = ErrorKind.ACCOUNT_INACTIVE


class SeriesMissing(FortnoxApiError):
    kind = ErrorKind.SERIES_MISSING


class SeriesNotManual(FortnoxApiError):
    kind = ErrorKind.SERIES_NOT_MANUAL


class CostCenterMissing(FortnoxApiError):
    kind = ErrorKind.COST_CENTER_MISSING


class CostCenterInactive(FortnoxApiError):
    kind = ErrorKind.COST_CENTER_INACTIVE


class CostCenterRequired(FortnoxApiError):
    kind = ErrorKind.COST_CENTER_REQUIRED


class FinancialYearMissing(FortnoxApiError):
    kind = ErrorKind.FINANCIAL_YEAR_MISSING


class PeriodLocked(FortnoxApiError):
    kind = ErrorKind.PERIOD_LOCKED


class LicenceOrScopeMissing(FortnoxApiError):
    kind = ErrorKind.LICENCE_OR_SCOPE_MISSING


class TermsOfPaymentMissing(FortnoxApiError):
    kind = ErrorKind.TERMS_OF_PAYMENT_MISSING


class VoucherUnbalanced(FortnoxApiError):
    kind = ErrorKind.VOUCHER_UNBALANCED


class TextTooLong(FortnoxApiError):
    kind = ErrorKind.TEXT_TOO_LONG


class WarehouseModuleActive(FortnoxError):
    """Stock cannot be set on the article because Fortnox Lager owns the balances."""

    kind = ErrorKind.WAREHOUSE_MODULE_ACTIVE


class UnexpectedResponse(FortnoxError):
    """Fortnox answered 2xx with a body we cannot read."""

    kind = ErrorKind.FORTNOX_UNAVAILABLE


# --- classification ----------------------------------------------------------------------------

CODE_ACCOUNT_NOT_FOUND = frozenset({2000423, 2001304})
CODE_PERIOD_LOCKED = 2000401
CODE_COST_CENTER_INACTIVE = 2000947
CODE_NUMBER_USED = 2000637
CODE_LICENCE_MISSING = frozenset({2001101, 2001103})
CODE_SCOPE_MISSING = frozenset({2000663, 2001339, 2001427, 2003330, 2000664})
CODE_TERMS_OF_PAYMENT_NOT_FOUND = 2000429
CODE_INVALID_PARAMETER = 2000588
CODE_WAREHOUSE_ERROR = 2003127
NOT_FOUND_CODES = frozenset(
    {2000204, 2000433, 2001302, 2000428, 2000434, 2000439, 2000429, 2000432, 2001161, 2003277}
)

_QUOTED = r"[\"“”'«](?P<q>[^\"“”'»]+)[\"“”'»]"
_ACCOUNT_NO = re.compile(r"\b(?P<n>[1-9]\d{3})\b")
_DATE = re.compile(r"(?P<d>\d{4}-\d{2}-\d{2})")


def _first(pattern: str | re.Pattern[str], text: str, group: str) -> str | None:
    compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, re.IGNORECASE)
    m = compiled.search(text)
    return m.group(group) if m else None


def _put(details: dict[str, object], key: str, value: object) -> None:
    """Set a detail read from Fortnox's message (more specific than the caller's context)."""
    if value is not None:
        details[key] = value


def _subject(path: str | None) -> str | None:
    parts = [p for p in (path or "").split("/") if p]
    if parts[:1] == ["api"] and len(parts) > 1:
        return parts[1]
    return parts[1] if len(parts) > 1 else None


def _series_from(text: str) -> str | None:
    quoted = _first(_QUOTED, text, "q")
    if quoted:
        return quoted.split(" - ")[0].strip()
    paren = re.search(r"\((?P<s>[A-Za-z0-9]{1,10})\)", text)
    return paren.group("s") if paren else None


def classify(
    info: ErrorInfo,
    *,
    tenant: str | None = None,
    method: str | None = None,
    path: str | None = None,
    context: Mapping[str, object] | None = None,
) -> FortnoxError:
    """The most specific error for what Fortnox answered.

    ``context`` carries what the caller knows (the voucher's date and series, the cost centre it
    used, ...) so that the shop-facing text names the right thing even when Fortnox's message
    does not.
    """
    text = info.message or ""
    low = text.lower()
    details: dict[str, object] = dict(context or {})
    kw: dict[str, Any] = {"tenant": tenant, "info": info, "method": method, "path": path}
    code = info.code
    err = (info.error or "").lower()

    def make(cls: type[FortnoxError], message: str | None = None) -> FortnoxError:
        return cls(message or text or f"Fortnox answered HTTP {info.status}", details=details, **kw)

    if info.status == 401:
        return make(LoginExpired, text or "unauthorized")
    if info.status == 429:
        return make(RateLimited, text or "rate limited (429)")
    if info.status >= 500:
        return make(ServerError, text or f"server error {info.status}")
    if code == CODE_PERIOD_LOCKED or err == "period_locked" or "låst perioden" in low:
        details.setdefault("date", _first(_DATE, text, "d"))
        return make(PeriodLocked)
    if (
        code in CODE_LICENCE_MISSING
        or code in CODE_SCOPE_MISSING
        or (info.status == 403 and code is None)
    ):
        details.setdefault("subject", _subject(path))
        return make(LicenceOrScopeMissing)
    if info.status == 404 or (code in NOT_FOUND_CODES and info.status != 400):
        # GET of something that does not exist. (400s naming a missing reference inside a
        # write, such as an account on a voucher row, are classified below.)
        return make(NotFound)
    if code == CODE_WAREHOUSE_ERROR and "quantityinstock" in low:
        return make(WarehouseModuleActive)
    if code == CODE_COST_CENTER_INACTIVE or (
        "kostnadsställ" in low and ("inaktiv" in low or "inte aktiv" in low)
    ):
        _put(details, "cost_center", _first(_QUOTED, text, "q"))
        return make(CostCenterInactive)
    if "kostnadsställ" in low and ("obligatorisk" in low or "krävs" in low):
        _put(details, "account", _first(_ACCOUNT_NO, text, "n"))
        return make(CostCenterRequired)
    if "kostnadsställ" in low and "inte tillåt" in low:
        details.setdefault("detail", text)
        return make(ValidationFailed)
    if "kostnadsställ" in low or "cost center" in low or "costcenter" in low:
        _put(details, "cost_center", _first(_QUOTED, text, "q"))
        return make(CostCenterMissing)
    if "verifikationsserie" in low or "voucher series" in low:
        details.setdefault("series", _series_from(text))
        if "manuell" in low or "manual" in low:
            return make(SeriesNotManual)
        return make(SeriesMissing)
    if "räkenskapsår" in low and ("saknas" in low or "finns inte" in low or "hitta" in low):
        details.setdefault("date", _first(_DATE, text, "d"))
        return make(FinancialYearMissing)
    if "balanserar inte" in low or "not balanced" in low:
        amounts = re.search(r"debet\s*(?P<d>[-\d.,]+).*?kredit\s*(?P<c>[-\d.,]+)", low)
        if amounts:
            details.setdefault("debit", amounts.group("d"))
            details.setdefault("credit", amounts.group("c"))
        return make(VoucherUnbalanced)
    if ("konto" in low or "account" in low) and (
        "inte aktiv" in low or "inaktiv" in low or "inactive" in low or "not active" in low
    ):
        _put(details, "account", _first(_ACCOUNT_NO, text, "n"))
        return make(AccountInactive)
    if code in CODE_ACCOUNT_NOT_FOUND or "hitta konto" in low:
        _put(details, "account", _first(_ACCOUNT_NO, text, "n"))
        return make(AccountMissing)
    if code == CODE_TERMS_OF_PAYMENT_NOT_FOUND or "betalningsvillkor" in low:
        details.setdefault("code", _first(_QUOTED, text, "q"))
        return make(TermsOfPaymentMissing)
    too_long = re.search(r"(?:fältet\s+(?P<f>\S+).*)?högst\s+(?P<n>\d+)\s+tecken", low)
    if too_long:
        details.setdefault("limit", too_long.group("n"))
        details.setdefault("subject", too_long.group("f") or _subject(path))
        return make(TextTooLong)
    if code == CODE_NUMBER_USED or "används redan" in low:
        return make(AlreadyExists)
    return make(ValidationFailed)


__all__ = [
    "AccountInactive",
    "AccountMissing",
    "AlreadyExists",
    "AppCredentialsInvalid",
    "AuthError",
    "ConsentError",
    "CostCenterInactive",
    "CostCenterMissing",
    "CostCenterRequired",
    "ErrorInfo",
    "FinancialYearMissing",
    "FortnoxApiError",
    "FortnoxError",
    "FortnoxUnavailable",
    "LicenceOrScopeMissing",
    "LoginExpired",
    "NotFound",
    "PeriodLocked",
    "RateLimited",
    "SeriesMissing",
    "SeriesNotManual",
    "ServerError",
    "TermsOfPaymentMissing",
    "TextTooLong",
    "TokenRefreshBusy",
    "TransportFailure",
    "UnexpectedResponse",
    "UnknownOutcome",
    "ValidationFailed",
    "VoucherUnbalanced",
    "WarehouseModuleActive",
    "classify",
    "parse_error_body",
]
