"""What the API's absolute stock writes overwrote: the benchmark's ground truth.

Fortnox keeps no such record; the sandbox does, so a benchmark can count the sales an
integration's writes lost without trusting the integration. For each article it remembers the
last ``QuantityInStock`` the API client saw (a ``GET /3/articles/{n}`` answer, or its own
``PUT``). A ``PUT`` that finds a different level discards the change made since (a web shop sale,
say): an overwrite of ``seen - before`` units. Web shop sales are counted too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Overwrite:
    article: str
    at: float
    #: The level the client last saw, the level the write found, the level it set.
    seen: float
    before: float
    written: float

    @property
    def lost(self) -> float:
        """The foreign change the write discarded (positive: units sold that came back)."""
        return self.seen - self.before


@dataclass
class StockAudit:
    seen: dict[str, float] = field(default_factory=dict)
    overwrites: list[Overwrite] = field(default_factory=list)
    api_writes: int = 0
    sales: int = 0
    sold: float = 0.0

    def read(self, article: str, level: float) -> None:
        self.seen[article] = level

    def write(self, article: str, before: float, after: float, at: float) -> None:
        self.api_writes += 1
        seen = self.seen.get(article, before)
        if seen != before:
            self.overwrites.append(Overwrite(article, at, seen, before, after))
        self.seen[article] = after

    def sale(self, quantity: float) -> None:
        self.sales += 1
        self.sold += quantity

    def as_dict(self) -> dict[str, Any]:
        return {
            "api_writes": self.api_writes,
            "webshop_sales": self.sales,
            "webshop_units": self.sold,
            "overwrites": [{**asdict(o), "lost": o.lost} for o in self.overwrites],
            "lost_units": sum(o.lost for o in self.overwrites),
        }
