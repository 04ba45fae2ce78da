"""A dead letter that was retried and fails again is open again, with the new error (it was
ignored before: a command refused a second time stayed out of sight)."""

from __future__ import annotations

from pathlib import Path

from engine.store.db import Database
from engine.store.outbox import DeadLetters
from topics.errors import ErrorKind, shop_error


def test_a_retried_letter_that_fails_again_is_open_again(tmp_path: Path) -> None:
    db = Database(tmp_path / "kassasync.db")
    letters = DeadLetters(db)
    first = shop_error(ErrorKind.INVALID_INPUT, detail="first refusal")
    again = shop_error(ErrorKind.INVALID_INPUT, detail="second refusal")
    with db.transaction():
        letters.add("cmd-1", "shop", "till.commands", "till.payment.register", b"{}", first)
    assert [r["id"] for r in letters.list()] == ["cmd-1"]
    with db.transaction():
        assert letters.resolve("cmd-1", "retried")
    assert letters.list() == []
    with db.transaction():
        letters.add("cmd-1", "shop", "till.commands", "till.payment.register", b"{}", again)
    opened = letters.list()
    assert [r["id"] for r in opened] == ["cmd-1"]
    assert "second refusal" in str(opened[0]["error"])
    # While it is open, the same refusal again changes nothing (the first error is kept).
    with db.transaction():
        letters.add("cmd-1", "shop", "till.commands", "till.payment.register", b"{}", first)
    assert "second refusal" in str(letters.list()[0]["error"])
    db.close()
