"""Shop-facing error kinds: every failure a shop can fix, named in its words, with the fix.

These travel inside outcomes and dead letters, and the dashboard shows them. The kinds are part of
the contract: a till vendor may map them to its own banners.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ErrorKind(StrEnum):
    ACCOUNT_MAPPING_MISSING = "account_mapping_missing"
    ACCOUNT_MISSING = "account_missing"
    ACCOUNT_INACTIVE = "account_inactive"
    SERIES_MISSING = "series_missing"
    SERIES_NOT_MANUAL = "series_not_manual"
    COST_CENTER_MISSING = "cost_center_missing"
    COST_CENTER_INACTIVE = "cost_center_inactive"
    COST_CENTER_REQUIRED = "cost_center_required"
    PROJECT_MISSING = "project_missing"
    FINANCIAL_YEAR_MISSING = "financial_year_missing"
    PERIOD_LOCKED = "period_locked"
    NOT_CONNECTED = "not_connected"
    LOGIN_EXPIRED = "login_expired"
    CONSENT_REVOKED = "consent_revoked"
    LICENCE_OR_SCOPE_MISSING = "licence_or_scope_missing"
    TERMS_OF_PAYMENT_MISSING = "terms_of_payment_missing"
    VOUCHER_UNBALANCED = "voucher_unbalanced"
    TEXT_TOO_LONG = "text_too_long"
    WAREHOUSE_MODULE_ACTIVE = "warehouse_module_active"
    BARCODE_CONFLICT = "barcode_conflict"
    INVALID_INPUT = "invalid_input"
    FORTNOX_REJECTED = "fortnox_rejected"
    FORTNOX_UNAVAILABLE = "fortnox_unavailable"
    TILL_UNREACHABLE = "till_unreachable"
    TILL_REFUSED = "till_refused"
    PAUSED_BY_OPERATOR = "paused_by_operator"
    CANCELLED_BY_OPERATOR = "cancelled_by_operator"


#: Which errors pause the whole tenant (nothing can succeed until the shop acts) as opposed to
#: parking only the one message that hit them.
PAUSES_TENANT: frozenset[ErrorKind] = frozenset(
    {
        ErrorKind.NOT_CONNECTED,
        ErrorKind.LOGIN_EXPIRED,
        ErrorKind.CONSENT_REVOKED,
        ErrorKind.LICENCE_OR_SCOPE_MISSING,
    }
)

FORTNOX_SETTINGS = "https://apps.fortnox.se/settings"

_TEXT: dict[ErrorKind, tuple[str, str, str | None]] = {
    # kind: (what happened, in the shop's words; how to fix it; Fortnox page it concerns)
    ErrorKind.ACCOUNT_MAPPING_MISSING: (
        "The bookkeeping could not be exported because an account mapping is missing{for_what}.",
        "Open the Kassasync settings for this shop and choose a Fortnox account for {subject}.",
        None,
    ),
    ErrorKind.ACCOUNT_MISSING: (
        "Account {account} does not exist in Fortnox for the financial year of this voucher.",
        "Log in to Fortnox, open Register > Kontoplan and add account {account}, "
        "or map a different account in Kassasync.",
        "https://apps.fortnox.se/bookkeeping/accounts",
    ),
    ErrorKind.ACCOUNT_INACTIVE: (
        "The bookkeeping could not be exported because account {account} is inactive in Fortnox.",
        "Log in to Fortnox, open Register > Kontoplan and activate account {account}.",
        "https://apps.fortnox.se/bookkeeping/accounts",
    ),
    ErrorKind.SERIES_MISSING: (
        "Voucher series {series} does not exist in Fortnox for this financial year.",
        "In Fortnox, open Inställningar > Bokföring > Verifikationsserier, pick the financial "
        "year and add series {series} with Manuell kontering ticked.",
        "https://apps.fortnox.se/settings/bookkeeping/voucherseries",
    ),
    ErrorKind.SERIES_NOT_MANUAL: (
        "Voucher series {series} is not manual (Manuell kontering) in Fortnox.",
        "In Fortnox, open Inställningar > Bokföring > Verifikationsserier and tick Manuell "
        "kontering for series {series} in this financial year.",
        "https://apps.fortnox.se/settings/bookkeeping/voucherseries",
    ),
    ErrorKind.COST_CENTER_MISSING: (
        'Cost centre "{cost_center}" is missing in Fortnox.',
        'Log in to Fortnox and add the cost centre with the code "{cost_center}" under '
        "Inställningar > Bokföring > Kostnadsställen.",
        "https://apps.fortnox.se/settings/bookkeeping/costcenters",
    ),
    ErrorKind.COST_CENTER_INACTIVE: (
        'Cost centre "{cost_center}" is inactive in Fortnox.',
        'Log in to Fortnox and activate the cost centre "{cost_center}" under '
        "Inställningar > Bokföring > Kostnadsställen.",
        "https://apps.fortnox.se/settings/bookkeeping/costcenters",
    ),
    ErrorKind.COST_CENTER_REQUIRED: (
        "Account {account} requires a cost centre in Fortnox, and none is set for {subject}.",
        "Give the till or location a cost centre code in Kassasync, or change the account's "
        "cost centre setting in Fortnox.",
        "https://apps.fortnox.se/bookkeeping/accounts",
    ),
    ErrorKind.PROJECT_MISSING: (
        'Project "{project}" is missing in Fortnox{detail}.',
        'Log in to Fortnox and add the project with the number "{project}" under Projekt, or '
        "correct the project (SIE dimension 6) in the till and export the file again.",
        "https://apps.fortnox.se/project/projects",
    ),
    ErrorKind.FINANCIAL_YEAR_MISSING: (
        "There is no financial year in Fortnox for {date}.",
        "Log in to Fortnox and create the financial year that contains {date} "
        "(Inställningar > Bokföring > Räkenskapsår).",
        "https://apps.fortnox.se/settings/bookkeeping/financialyears",
    ),
    ErrorKind.PERIOD_LOCKED: (
        "The bookkeeping period containing {date} is locked in Fortnox.",
        "Ask your accountant to unlock the period in Fortnox, or post the correction in an "
        "open period.",
        "https://apps.fortnox.se/settings/bookkeeping/lockedperiod",
    ),
    ErrorKind.NOT_CONNECTED: (
        "This shop is not connected to Fortnox yet.",
        "Send the consent link on the dashboard's page /tenants/{tenant}/connection to the "
        "shop's Fortnox administrator, or run kassasync connect {tenant} on the Kassasync "
        "machine. Sync starts by itself once the administrator has approved.",
        None,
    ),
    ErrorKind.LOGIN_EXPIRED: (
        "Your Fortnox login has expired: Kassasync could not use it for 45 days.",
        "Send the shop's Fortnox administrator a new consent link from the dashboard's page "
        "/tenants/{tenant}/connection, or run kassasync connect {tenant}. Nothing is lost: the "
        "shop's changes wait and sync resumes by itself after approval.",
        "https://apps.fortnox.se/integrations",
    ),
    ErrorKind.CONSENT_REVOKED: (
        "Fortnox no longer accepts Kassasync for this shop: the access was withdrawn in "
        "Fortnox (Integrationer) or by a Fortnox administrator.",
        "If the shop still wants the sync, its Fortnox administrator approves Kassasync again "
        "with a new consent link from the dashboard's page /tenants/{tenant}/connection. "
        "Changes wait meanwhile and sync resumes by itself after approval.",
        "https://apps.fortnox.se/integrations",
    ),
    ErrorKind.LICENCE_OR_SCOPE_MISSING: (
        "Fortnox refused access: the company lacks a licence or the connection lacks "
        "permission for {subject}.",
        "Add the Fortnox module ({subject}) in Fortnox's Marknadsplats and reconnect "
        "Kassasync so that the new permission is granted.",
        "https://apps.fortnox.se/marketplace",
    ),
    ErrorKind.TERMS_OF_PAYMENT_MISSING: (
        'Terms of payment "{code}" do not exist in Fortnox.',
        "Choose terms of payment from Fortnox's list in the Kassasync settings, or add them in "
        "Fortnox under Inställningar > Fakturering > Betalningsvillkor.",
        "https://apps.fortnox.se/settings/invoicing/termsofpayment",
    ),
    ErrorKind.VOUCHER_UNBALANCED: (
        "The voucher for {subject} does not balance: debit {debit} and credit {credit}.",
        "Check the Z-report's totals and the account mapping for every payment method, VAT "
        "rate and product group; then resend the Z-report.",
        None,
    ),
    ErrorKind.TEXT_TOO_LONG: (
        "A text in {subject} is longer than Fortnox allows ({limit} characters).",
        "Shorten the text in the till; Kassasync will then send it again.",
        None,
    ),
    ErrorKind.WAREHOUSE_MODULE_ACTIVE: (
        "Fortnox's warehouse module (Lager) is active, so stock cannot be set on the article.",
        "Turn on 'stock through warehouse documents' in Kassasync for this shop, or turn off "
        "stock sync; Kassasync will not overwrite warehouse balances.",
        "https://apps.fortnox.se/warehouse",
    ),
    ErrorKind.BARCODE_CONFLICT: (
        "Article {article} was not sent to the till: barcode {ean} already belongs to "
        "article {holder}.",
        "Give one of the articles another barcode in Fortnox, or hide one with #E# in its "
        "description. Article {article} is then sent automatically.",
        "https://apps.fortnox.se/articles",
    ),
    ErrorKind.INVALID_INPUT: (
        "A message from the till was rejected: {detail}",
        "Fix the till's export of this record and send it again; other records are unaffected.",
        None,
    ),
    ErrorKind.FORTNOX_REJECTED: (
        "Fortnox rejected the request: {detail}",
        "Correct the data named in the message in Fortnox or in the till; then retry the dead "
        "letter from the dashboard.",
        None,
    ),
    ErrorKind.FORTNOX_UNAVAILABLE: (
        "Fortnox did not answer ({detail}). Kassasync keeps retrying.",
        "Nothing to do: the change is kept and sent when Fortnox answers again.",
        None,
    ),
    ErrorKind.TILL_REFUSED: (
        "The till's back office refused a command from Kassasync ({subject}): {detail}",
        "Check the till's log for why it refused the change; then retry the dead letter on the "
        "dashboard, or discard it if the till is right.",
        None,
    ),
    ErrorKind.PAUSED_BY_OPERATOR: (
        "Sync with Fortnox is paused by the Kassasync operator: {detail}",
        "Nothing to do in the shop: changes wait and are sent when the operator resumes the sync.",
        None,
    ),
    ErrorKind.CANCELLED_BY_OPERATOR: (
        "The Kassasync operator stopped retrying this command: {detail}",
        "Nothing to do in the shop. The operator can retry it from the dead letters once its "
        "cause is fixed, or discard it.",
        None,
    ),
    ErrorKind.TILL_UNREACHABLE: (
        "The till's back office did not accept a command ({detail}). Kassasync keeps retrying.",
        "Check that the back office is running and reachable at its configured address.",
        None,
    ),
}


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


class ShopError(BaseModel):
    """An error as the shop sees it: what happened, how to fix it, where in Fortnox."""

    model_config = ConfigDict(frozen=True)

    kind: ErrorKind
    message: str
    fix: str
    link: str | None = None
    details: dict[str, str] = Field(default_factory=dict)

    @property
    def pauses_tenant(self) -> bool:
        return self.kind in PAUSES_TENANT


def shop_error(kind: ErrorKind, **details: object) -> ShopError:
    """Build the shop-facing error for ``kind`` with the given details filled in."""
    text = {k: str(v) for k, v in details.items() if v is not None}
    if kind is ErrorKind.ACCOUNT_MAPPING_MISSING and "subject" in text:
        text.setdefault("for_what", f" for {text['subject']}")
    fields = _Blank(text)
    fields.setdefault("for_what", "")
    message, fix, link = _TEXT[kind]
    return ShopError(
        kind=kind,
        message=message.format_map(fields),
        fix=fix.format_map(fields),
        link=link,
        details=text,
    )
