"""Typed async methods per Fortnox resource, grouped the way Kassasync uses them."""

from engine.fortnox.resources.articles import Articles
from engine.fortnox.resources.bookkeeping import Bookkeeping
from engine.fortnox.resources.customers import Customers
from engine.fortnox.resources.files import Files
from engine.fortnox.resources.orders import Orders
from engine.fortnox.resources.payments import InvoicePayments
from engine.fortnox.resources.prices import Prices
from engine.fortnox.resources.settings import Settings

__all__ = [
    "Articles",
    "Bookkeeping",
    "Customers",
    "Files",
    "InvoicePayments",
    "Orders",
    "Prices",
    "Settings",
]
