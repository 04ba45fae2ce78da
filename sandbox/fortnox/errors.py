"""Fortnox's error bodies, and the catalogue of codes the sandbox answers with.

Shapes (see reference/fortnox-api.md §1.2, §4):

* REST ``/3``: ``{"ErrorInformation": {...}}`` with **PascalCase** keys on 404s
  (``Error``/``Message``/``Code``) and **lower-case** keys otherwise
  (``error``/``message``/``code``), as in the recorded traffic.
* expired, invalid or revoked bearer token: HTTP 401 with exactly ``{"message":"unauthorized"}``.
* ``/api/warehouse``: ``{"error": "<string code>", "message": "...", "id": "..."}``.
* the OAuth token endpoint: ``{"error": "invalid_grant", "error_description": "..."}``.

Every :class:`ErrorSpec` says whether Fortnox documents the code (``documented=True``, with the
source) or whether the sandbox had to choose one (``documented=False``; these use the 2999xxx
range, which Fortnox does not use, so nobody mistakes them for real codes).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

UNAUTHORIZED_BODY = b'{"message":"unauthorized"}'


class FortnoxError(Exception):
    """An error answer in Fortnox's ``ErrorInformation`` shape."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        if self.status == 404:
            inner: dict[str, Any] = {"Error": 1, "Message": self.message, "Code": self.code}
        else:
            inner = {"error": 1, "message": self.message, "code": self.code}
        return {"ErrorInformation": inner}

    def response(self) -> Response:
        return Response(
            json.dumps(self.body(), ensure_ascii=False, separators=(",", ":")).encode(),
            status_code=self.status,
            media_type="application/json",
        )


class WarehouseError(Exception):
    """An error answer from the ``/api/warehouse`` services (string error codes)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message

    def response(self) -> Response:
        body = {"error": self.error, "message": self.message, "id": str(uuid.uuid4())}
        return Response(
            json.dumps(body, ensure_ascii=False).encode(),
            status_code=self.status,
            media_type="application/json",
        )


class OAuthError(Exception):
    """An error answer from ``/oauth-v1/token`` (RFC 6749 shape)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> Response:
        body = {"error": self.error, "error_description": self.description}
        return Response(json.dumps(body).encode(), self.status, media_type="application/json")


def unauthorized() -> Response:
    """Fortnox's answer to an expired, invalid or revoked bearer token (26 bytes)."""
    return Response(UNAUTHORIZED_BODY, 401, media_type="application/json")


@dataclass(frozen=True)
class ErrorSpec:
    """One entry of the catalogue: status, code and Swedish message template."""

    name: str
    status: int
    code: int
    message: str
    documented: bool
    source: str

    def __call__(self, **fields: object) -> FortnoxError:
        text = self.message.format(**fields) if fields else self.message
        return FortnoxError(self.status, self.code, text)


CATALOGUE: list[ErrorSpec] = []


def _spec(
    name: str, status: int, code: int, message: str, *, source: str = "", documented: bool = True
) -> ErrorSpec:
    spec = ErrorSpec(name, status, code, message, documented, source or "sandbox choice")
    CATALOGUE.append(spec)
    return spec


# --- documented by Fortnox, or seen in recorded traffic / integrator help desks ------------------
SYSTEM_EXCEPTION = _spec("system_exception", 500, 1000003, "System exception", source="O")
INVALID_CONTENT_TYPE = _spec(
    "invalid_content_type", 400, 1000031, "Invalid content type", source="O"
)
NOT_NUMERIC = _spec(
    "not_numeric", 400, 2000108, "Värdet måste vara numeriskt ({value})", source="O"
)
NOT_BOOLEAN = _spec(
    "not_boolean", 400, 2000134, "Värdet måste vara en boolean ({value})", source="O"
)
INVALID_CHARACTERS = _spec(
    "invalid_characters", 400, 2000359, "Värdet innehåller ej tillåtna tecken.", source="O"
)
INVALID_FILTER = _spec(
    "invalid_filter",
    400,
    2000587,
    "Ett ogiltigt filter har använts.",
    source="R invoices/filter_invalid",
)
INVALID_PARAMETER = _spec(
    "invalid_parameter", 400, 2000588, "Ogiltig parameter i anropet.", source="O"
)
CUSTOMER_NUMBER_USED = _spec(
    "customer_number_used",
    400,
    2000637,
    "Kundnummer {number} används redan. Kundnumret har redan använts men blivit raderat.",
    source="O",
)
NO_DATA = _spec("no_data", 400, 2001392, "Ingen eller felaktig typ av data.", source="O")
BAD_JSON = _spec(
    "bad_json", 400, 2002115, "Error deserializing JSON: JSON_ERROR_SYNTAX", source="O"
)
INVALID_FIELD_NAME = _spec(
    "invalid_field_name", 400, 2001399, "Felaktigt fältnamn ({field})", source="O"
)
NO_LICENCE = _spec(
    "no_licence", 403, 2001101, "Det finns ingen aktiv licens för önskat scope", source="O"
)
NO_SCOPE = _spec(
    "no_scope", 403, 2000663, "Har inte behörighet för scope", source="M; Invantive forum"
)
ACCOUNT_NOT_FOUND = _spec("account_not_found", 404, 2000423, "Kan inte hitta kontot.", source="O")
ROW_ACCOUNT_NOT_FOUND = _spec(
    "row_account_not_found", 400, 2001304, 'Kunde inte hitta konto "{account}"', source="O, F-faq"
)
CUSTOMER_MISSING = _spec("customer_missing", 400, 2000204, "Kunde inte hitta kund", source="M")
CUSTOMER_NOT_FOUND = _spec("customer_not_found", 404, 2000433, "Kan inte hitta kunden.", source="R")
ARTICLE_MISSING = _spec(
    "article_missing", 400, 2001302, 'Kunde inte hitta artikel "{article}"', source="M"
)
ARTICLE_NOT_FOUND = _spec(
    "article_not_found", 404, 2000428, "Kan inte hitta artikeln.", source="R articles/find_failure"
)
INVOICE_NOT_FOUND = _spec("invoice_not_found", 404, 2000434, "Kan inte hitta fakturan.", source="R")
INVOICE_MISSING = _spec("invoice_missing", 400, 2000434, "Kan inte hitta fakturan.", source="R")
ORDER_NOT_FOUND = _spec("order_not_found", 404, 2000439, "Kan inte hitta ordern.", source="R")
TERMS_NOT_FOUND = _spec(
    "terms_not_found", 404, 2000429, "Kan inte hitta betalningsvillkoret.", source="R"
)
TERMS_MISSING = _spec(
    "terms_missing", 400, 2000429, 'Kan inte hitta betalningsvillkoret "{code}".', source="R"
)
UNIT_NOT_FOUND = _spec("unit_not_found", 404, 2000432, "Kan inte hitta enheten.", source="R")
UNIT_MISSING = _spec("unit_missing", 400, 2000432, 'Kan inte hitta enheten "{unit}".', source="R")
PROJECT_MISSING = _spec("project_missing", 400, 2001161, "Kan inte hitta projektet.", source="R")
NO_SUCH_ROUTE = _spec("no_such_route", 404, 2000762, "No such route", source="T softwerkab#51")
PERIOD_LOCKED = _spec(
    "period_locked",
    400,
    2000401,
    "Företaget har låst perioden t.o.m. {end}. Lås upp perioden för att kunna bokföra.",
    source="T Sharespine 'Fortnox error 2000401'",
)
COST_CENTER_INACTIVE = _spec(
    "cost_center_inactive",
    400,
    2000947,
    'Kostnadsstället "{code}" är inaktivt',
    source="T Sharespine 'Fortnox error 2000947' (message is the sandbox's)",
)
WAREHOUSE_STOCK_LOCKED = _spec(
    "warehouse_stock_locked",
    400,
    2003127,
    "Ett fel uppstod i lagermodulen: lagersaldot ändras med lagerdokument när Lager är aktiverat "
    "(QuantityInStock)",
    source="M (code and first half of the message); the reason is the sandbox's",
)

# --- codes Fortnox does not document: the sandbox's own (2999xxx) --------------------------------
PRICELIST_NOT_FOUND = _spec(
    "pricelist_not_found", 404, 2999001, "Kan inte hitta prislistan.", documented=False
)
PRICE_NOT_FOUND = _spec("price_not_found", 404, 2999002, "Kan inte hitta priset.", documented=False)
PAYMENT_NOT_FOUND = _spec(
    "payment_not_found", 404, 2999003, "Kan inte hitta inbetalningen.", documented=False
)
COST_CENTER_NOT_FOUND = _spec(
    "cost_center_not_found", 404, 2999004, "Kan inte hitta kostnadsstället.", documented=False
)
SERIES_NOT_FOUND = _spec(
    "series_not_found", 404, 2999005, "Kan inte hitta verifikationsserien.", documented=False
)
VOUCHER_NOT_FOUND = _spec(
    "voucher_not_found", 404, 2999006, "Kan inte hitta verifikationen.", documented=False
)
FINANCIAL_YEAR_NOT_FOUND = _spec(
    "financial_year_not_found", 404, 2999007, "Kan inte hitta räkenskapsåret.", documented=False
)
FINANCIAL_YEAR_MISSING = _spec(
    "financial_year_missing",
    400,
    2999007,
    "Räkenskapsår saknas för valt datum ({date})",
    documented=False,
    source="message: Fortnox Kvitto & Utlägg help page; code: sandbox",
)
FILE_NOT_FOUND = _spec("file_not_found", 404, 2999008, "Kan inte hitta filen.", documented=False)
CONNECTION_NOT_FOUND = _spec(
    "connection_not_found", 404, 2999009, "Kan inte hitta filkopplingen.", documented=False
)
SERIES_MISSING = _spec(
    "series_missing",
    400,
    2999010,
    'Verifikationsserien "{series}" finns inte',
    documented=False,
    source="message: Onslip help desk; code: sandbox",
)
SERIES_NOT_MANUAL = _spec(
    "series_not_manual",
    400,
    2999011,
    "Verifikationsserien är inte manuell ({series})",
    documented=False,
    source="message: Onslip/Gastrogate help desks; code: sandbox",
)
ACCOUNT_INACTIVE = _spec(
    "account_inactive",
    400,
    2999012,
    'Konto "{account}" är inte aktivt',
    documented=False,
    source="message: Onslip/Gastrogate help desks; code: sandbox",
)
COST_CENTER_MISSING = _spec(
    "cost_center_missing",
    400,
    2999013,
    'Kunde inte hitta kostnadsställe "{code}"',
    documented=False,
    source="message: QBIS help page; code: sandbox",
)
COST_CENTER_REQUIRED = _spec(
    "cost_center_required",
    400,
    2999014,
    "Kostnadsställe är obligatoriskt för konto {account}",
    documented=False,
    source="message: Fortnox SIE troubleshooting guide; code: sandbox",
)
COST_CENTER_NOT_ALLOWED = _spec(
    "cost_center_not_allowed",
    400,
    2999015,
    "Kostnadsställe är inte tillåtet för konto {account}",
    documented=False,
)
VOUCHER_UNBALANCED = _spec(
    "voucher_unbalanced",
    400,
    2999016,
    "Verifikationen balanserar inte (debet {debit}, kredit {credit})",
    documented=False,
)
VOUCHER_TOO_FEW_ROWS = _spec(
    "voucher_too_few_rows",
    400,
    2999017,
    "En verifikation måste ha minst två rader",
    documented=False,
)
TEXT_TOO_LONG = _spec(
    "text_too_long",
    400,
    2999018,
    "Fältet {field} får vara högst {limit} tecken",
    documented=False,
)
REQUIRED_FIELD = _spec(
    "required_field", 400, 2999019, "Fältet {field} är obligatoriskt", documented=False
)
INVALID_VALUE = _spec(
    "invalid_value", 400, 2999020, "Ogiltigt värde för {field} ({value})", documented=False
)
ALREADY_EXISTS = _spec(
    "already_exists", 400, 2999021, "{what} {key} används redan.", documented=False
)
READ_ONLY_FIELD = _spec(
    "read_only_field",
    400,
    2999022,
    "Fältet {field} är skrivskyddat",
    documented=False,
    source="behaviour: softwerkab/fortnox-csharp-api-sdk#154 (SalesPrice -> BadRequest); "
    "code and message: sandbox",
)
PAYMENT_BEFORE_INVOICE = _spec(
    "payment_before_invoice",
    400,
    2999023,
    "Betalningsdatum kan inte vara före fakturadatum",
    documented=False,
    source="behaviour: Junipeer KB; code and message: sandbox",
)
CANNOT_DELETE = _spec(
    "cannot_delete", 400, 2999024, "{what} kan inte tas bort: {reason}", documented=False
)
DATE_OUTSIDE_YEAR = _spec(
    "date_outside_year",
    400,
    2999025,
    "Datumet {date} ligger inte i valt räkenskapsår ({from_date} - {to_date})",
    documented=False,
)
DOCUMENT_LOCKED = _spec(
    "document_locked", 400, 2999026, "{what} kan inte ändras: {reason}", documented=False
)
FINANCIAL_YEAR_OVERLAP = _spec(
    "financial_year_overlap",
    400,
    2999027,
    "Räkenskapsåret överlappar ett befintligt räkenskapsår",
    documented=False,
)


def catalogue() -> list[dict[str, Any]]:
    """The catalogue as plain rows (served at ``/_sandbox/errors`` and listed in the docs)."""
    return [
        {
            "name": s.name,
            "status": s.status,
            "code": s.code,
            "message": s.message,
            "documented": s.documented,
            "source": s.source,
        }
        for s in CATALOGUE
    ]
