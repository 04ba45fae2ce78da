from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from engine.fortnox.models import (
    Article,
    Customer,
    InvoicePayment,
    Order,
    OrderRow,
    Voucher,
    VoucherRow,
)


def test_numbers_sent_as_strings() -> None:
    article = Article.model_validate(
        {
            "ArticleNumber": 1001,
            "QuantityInStock": "-8",
            "DisposableQuantity": "-8",
            "SalesPrice": "1 234,50",
            "VAT": "",
            "Active": "true",
            "SalesAccount": "3001",
        }
    )
    assert article.article_number == "1001"
    assert article.quantity_in_stock == Decimal("-8")
    assert article.disposable_quantity == Decimal("-8")
    assert article.sales_price == Decimal("1234.50")
    assert article.vat is None
    assert article.active is True
    assert article.sales_account == 3001


def test_unknown_fields_kept_and_optional_fields_missing() -> None:
    customer = Customer.model_validate({"Name": "Anna", "BrandNewField": {"x": 1}})
    assert customer.name == "Anna"
    assert customer.customer_number is None
    assert customer.model_extra == {"BrandNewField": {"x": 1}}


def test_order_rows_with_string_quantities() -> None:
    order = Order.model_validate(
        {
            "DocumentNumber": 7,
            "OrderRows": [{"ArticleNumber": "A", "OrderedQuantity": "2.00", "Total": "100"}],
        }
    )
    assert order.document_number == "7"
    assert order.order_rows is not None
    assert order.order_rows[0].ordered_quantity == Decimal("2.00")


def test_payload_has_only_set_writable_fields() -> None:
    parsed = Article.model_validate(
        {"ArticleNumber": "A", "SalesPrice": 10, "QuantityInStock": 3, "Unknown": 1}
    )
    payload = parsed.to_payload()
    assert payload == {"ArticleNumber": "A", "QuantityInStock": 3}
    fresh = Voucher(
        voucher_series="K",
        transaction_date=date(2024, 1, 2),
        description="Z 1",
        voucher_rows=[
            VoucherRow(account=1910, debit=Decimal("100.50")),
            VoucherRow(account=3001, credit=Decimal("100.50"), removed=False),
        ],
    )
    assert fresh.to_payload() == {
        "VoucherSeries": "K",
        "TransactionDate": "2024-01-02",
        "Description": "Z 1",
        "VoucherRows": [{"Account": 1910, "Debit": 100.5}, {"Account": 3001, "Credit": 100.5}],
    }


def test_dates_and_garbage() -> None:
    payment = InvoicePayment.model_validate(
        {"InvoiceNumber": "12", "PaymentDate": "2024-02-03", "Amount": 5}
    )
    assert payment.invoice_number == 12 and payment.payment_date == date(2024, 2, 3)
    with pytest.raises(ValidationError):
        OrderRow.model_validate({"OrderedQuantity": "many"})
    with pytest.raises(ValidationError):
        Article.model_validate({"QuantityInStock": True})
