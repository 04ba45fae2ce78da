"""The embedded processor over the core: a record the store cannot commit is found and parked
alone while the rest of its batch commits; a fault of the machine commits nothing and the same
records are processed once it is gone."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engine.embedded import processor as processor_module
from engine.embedded.processor import Processor
from engine.store import state as state_module
from engine.store.db import Database
from engine.store.log import Log
from engine.store.outbox import DeadLetters
from reconcilers.state import Record
from topics import till


def upsert(tenant: str, number: str) -> till.CustomerUpserted:
    return till.CustomerUpserted.model_validate(
        {
            "id": f"{tenant}-{number}",
            "tenant": tenant,
            "occurred_at": dt.datetime.now(dt.UTC),
            "source": "till",
            "data": {"till_customer_id": number, "customer": {"name": f"Kund {number}"}},
        }
    )


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "k.db")


def test_a_record_that_cannot_be_committed_is_parked_alone(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log(db)
    for tenant, number in [("shop-a", "1"), ("shop-b", "2"), ("shop-a", "3")]:
        log.append(upsert(tenant, number))
    real = state_module._encode

    def encode(value: Record) -> str:
        if "Kund 2" in str(value):
            raise TypeError("this record cannot be stored")
        return real(value)

    monkeypatch.setattr(state_module, "_encode", encode)
    processor = Processor(db, log_notes=False)
    result = processor.step()
    assert result.dead_letters == 1
    assert result.processed == 2
    letters = DeadLetters(db).list()
    assert [(row["tenant"], row["type"]) for row in letters] == [
        ("shop-b", "till.customer.upserted")
    ]
    assert "this record cannot be stored" in str(letters[0]["error"])
    assert processor.store.get("shop-a", "cust.till", "1") is not None
    assert processor.store.get("shop-a", "cust.till", "3") is not None
    assert not any(processor.lag().values())


def test_a_fault_of_the_machine_commits_nothing_and_is_retried(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log(db)
    log.append(upsert("shop-a", "1"))
    processor = Processor(db, log_notes=False)
    real = processor_module.process
    failing = True

    def process(*args: Any, **kwargs: Any) -> Any:
        if failing:
            raise sqlite3.OperationalError("database or disk is full")
        return real(*args, **kwargs)

    monkeypatch.setattr(processor_module, "process", process)
    with pytest.raises(sqlite3.OperationalError):
        processor.step()
    assert DeadLetters(db).list() == []
    assert sum(processor.lag().values()) == 1
    failing = False
    assert processor.step().processed == 1
    assert not any(processor.lag().values())
