from __future__ import annotations

import pytest

from engine.fortnox import errors as e
from topics.errors import ErrorKind


def test_error_information_in_both_casings() -> None:
    pascal = b'{"ErrorInformation":{"Error":1,"Message":"Kan inte hitta artikeln.","Code":2000428}}'
    lower = (
        b'{"ErrorInformation":{"error":1,'
        b'"message":"Ett ogiltigt filter har anv\xc3\xa4nts.","code":2000587}}'
    )
    p = e.parse_error_body(404, pascal)
    low = e.parse_error_body(400, lower)
    assert (p.code, p.message) == (2000428, "Kan inte hitta artikeln.")
    assert (low.code, low.message) == (2000587, "Ett ogiltigt filter har använts.")
    assert isinstance(e.classify(p), e.NotFound)
    assert isinstance(e.classify(low), e.ValidationFailed)


def test_other_shapes() -> None:
    unauthorized = e.parse_error_body(401, b'{"message":"unauthorized"}')
    assert unauthorized.message == "unauthorized"
    assert isinstance(e.classify(unauthorized), e.LoginExpired)
    warehouse = e.parse_error_body(400, {"error": "period_locked", "message": "locked", "id": "x"})
    assert warehouse.error == "period_locked" and warehouse.code is None
    assert isinstance(e.classify(warehouse), e.PeriodLocked)
    oauth = e.parse_error_body(400, b'{"error":"invalid_grant","error_description":"Invalid"}')
    assert (oauth.error, oauth.message) == ("invalid_grant", "Invalid")
    assert e.parse_error_body(502, b"<html>Bad gateway</html>").message.startswith("<html>")
    assert e.parse_error_body(500, b"").code is None
    assert e.parse_error_body(400, b'{"ErrorInformation":{"code":"2000401"}}').code == 2000401


def info(status: int, message: str, code: int | None = None) -> e.ErrorInfo:
    return e.ErrorInfo(status=status, code=code, message=message)


@pytest.mark.parametrize(
    ("status", "code", "message", "cls", "kind", "detail"),
    [
        (
            400,
            2000401,
            "Företaget har låst perioden t.o.m. 2024-03-31. Lås upp perioden.",
            e.PeriodLocked,
            ErrorKind.PERIOD_LOCKED,
            ("date", "2024-03-31"),
        ),
        (
            403,
            2001101,
            "Det finns ingen aktiv licens för önskat scope",
            e.LicenceOrScopeMissing,
            ErrorKind.LICENCE_OR_SCOPE_MISSING,
            ("subject", "vouchers"),
        ),
        (
            403,
            2000663,
            "Har inte behörighet för scope",
            e.LicenceOrScopeMissing,
            ErrorKind.LICENCE_OR_SCOPE_MISSING,
            None,
        ),
        (
            400,
            2001304,
            'Kunde inte hitta konto "3011"',
            e.AccountMissing,
            ErrorKind.ACCOUNT_MISSING,
            ("account", "3011"),
        ),
        (
            400,
            2999017,
            'Konto "1930" är inte aktivt',
            e.AccountInactive,
            ErrorKind.ACCOUNT_INACTIVE,
            ("account", "1930"),
        ),
        (
            400,
            2999010,
            'Verifikationsserien "K" finns inte',
            e.SeriesMissing,
            ErrorKind.SERIES_MISSING,
            ("series", "K"),
        ),
        (
            400,
            2999011,
            "Verifikationsserien är inte manuell (F)",
            e.SeriesNotManual,
            ErrorKind.SERIES_NOT_MANUAL,
            ("series", "F"),
        ),
        (
            400,
            2000947,
            'Kostnadsstället "STHLM" är inaktivt',
            e.CostCenterInactive,
            ErrorKind.COST_CENTER_INACTIVE,
            ("cost_center", "STHLM"),
        ),
        (
            400,
            2999012,
            'Kunde inte hitta kostnadsställe "GBG"',
            e.CostCenterMissing,
            ErrorKind.COST_CENTER_MISSING,
            ("cost_center", "GBG"),
        ),
        (
            400,
            2999013,
            "Kostnadsställe är obligatoriskt för konto 3001",
            e.CostCenterRequired,
            ErrorKind.COST_CENTER_REQUIRED,
            ("account", "3001"),
        ),
        (
            400,
            2999014,
            "Räkenskapsår saknas för valt datum (2031-01-01)",
            e.FinancialYearMissing,
            ErrorKind.FINANCIAL_YEAR_MISSING,
            ("date", "2031-01-01"),
        ),
        (
            400,
            2000429,
            'Kan inte hitta betalningsvillkoret "45".',
            e.TermsOfPaymentMissing,
            ErrorKind.TERMS_OF_PAYMENT_MISSING,
            ("code", "45"),
        ),
        (
            400,
            2999015,
            "Verifikationen balanserar inte (debet 100, kredit 90)",
            e.VoucherUnbalanced,
            ErrorKind.VOUCHER_UNBALANCED,
            ("credit", "90"),
        ),
        (
            400,
            2999018,
            "Fältet Description får vara högst 200 tecken",
            e.TextTooLong,
            ErrorKind.TEXT_TOO_LONG,
            ("limit", "200"),
        ),
        (
            400,
            2000637,
            "Kundnummer 1 används redan.",
            e.AlreadyExists,
            ErrorKind.FORTNOX_REJECTED,
            None,
        ),
        (404, 2000433, "Kan inte hitta kunden.", e.NotFound, ErrorKind.FORTNOX_REJECTED, None),
        (
            404,
            2999007,
            "Kan inte hitta räkenskapsåret.",
            e.NotFound,
            ErrorKind.FORTNOX_REJECTED,
            None,
        ),
        (
            400,
            2003127,
            "Ett fel uppstod i lagermodulen (QuantityInStock)",
            e.WarehouseModuleActive,
            ErrorKind.WAREHOUSE_MODULE_ACTIVE,
            None,
        ),
        (
            400,
            2000588,
            "Ogiltig parameter i anropet.",
            e.ValidationFailed,
            ErrorKind.FORTNOX_REJECTED,
            None,
        ),
        (429, None, "", e.RateLimited, ErrorKind.FORTNOX_UNAVAILABLE, None),
        (503, None, "", e.ServerError, ErrorKind.FORTNOX_UNAVAILABLE, None),
    ],
)
def test_classification_and_shop_error(
    status: int,
    code: int | None,
    message: str,
    cls: type[e.FortnoxError],
    kind: ErrorKind,
    detail: tuple[str, str] | None,
) -> None:
    error = e.classify(info(status, message, code), tenant="shop-1", path="/3/vouchers")
    assert type(error) is cls
    shop = error.shop_error()
    assert shop.kind is kind
    assert shop.fix
    if detail is not None:
        assert error.details[detail[0]] == detail[1]
        assert detail[1] in shop.message + shop.fix


def test_context_names_what_the_message_does_not() -> None:
    error = e.classify(
        info(400, "Verifikationsserien är inte manuell", None),
        context={"series": "KASSA", "date": "2024-05-01"},
    )
    assert isinstance(error, e.SeriesNotManual)
    assert "KASSA" in error.shop_error().message


def test_login_expired_pauses_tenant_and_names_it() -> None:
    error = e.LoginExpired("invalid_grant", tenant="shop-9")
    shop = error.shop_error()
    assert shop.kind is ErrorKind.LOGIN_EXPIRED and shop.pauses_tenant
    assert "shop-9" in shop.fix


def test_unknown_outcome_carries_the_attempt() -> None:
    error = e.UnknownOutcome(
        "lost", tenant="t", method="POST", path="/3/vouchers", payload={"Voucher": {"A": 1}}
    )
    assert error.payload == {"Voucher": {"A": 1}}
    assert error.shop_error().kind is ErrorKind.FORTNOX_UNAVAILABLE
    assert "POST /3/vouchers" in str(error)
