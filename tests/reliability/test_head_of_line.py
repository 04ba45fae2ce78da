"""Head-of-line from outside: a till that answers 5xx for one payment, for as long as it likes,
does not hold back the tenant's other payments; the operator sees the command that is still
being retried and retries it now or cancels it, from the CLI and from the dashboard."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.cli.main import main
from engine.logging import configure
from engine.web.auth import ADMIN_TOKEN_ENV
from tests.ops.world import (
    ADMIN_TOKEN,
    TENANT,
    Live,
    add_tenant,
    free_port,
    new_engine,
    payment,
    wait_for,
)


@dataclass
class Till:
    """A back office that answers 503 for the payments in ``failing``, 200 for the others."""

    failing: set[str]
    received: list[str] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/kassasync/commands")
        async def command(request: Request) -> JSONResponse:
            body = await request.json()
            number = str(body["data"]["payment"]["number"])
            if number in self.failing:
                self.refused[number] = self.refused.get(number, 0) + 1
                return JSONResponse({"error": "ledger locked"}, status_code=503)
            self.received.append(number)
            return JSONResponse({"result": {"ok": "true"}})

        return app


@pytest.fixture(autouse=True)
def _keep_logging() -> object:
    saved = structlog.get_config()
    configure("WARNING")
    yield None
    structlog.configure(**saved)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["--log-level", "WARNING", *argv])
    return code, capsys.readouterr().out


def test_a_payment_the_till_keeps_refusing_does_not_hold_back_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    till = Till(failing={"1"})
    engine = new_engine(tmp_path, http_port=free_port())
    live = Live(engine, {"till": till.app()})
    add_tenant(engine, till_url=live.url_of("till") + "/kassasync/commands")
    for number in ("1", "2", "3"):
        payment(engine, number)  # Fortnox shows three payments: three till commands, in order
    data = str(tmp_path)
    monkeypatch.setenv(ADMIN_TOKEN_ENV, ADMIN_TOKEN)
    with live, live.api() as api:
        # The first one fails again and again; the two behind it are delivered meanwhile.
        wait_for(lambda: sorted(till.received) == ["2", "3"], seconds=15)
        assert till.refused["1"] >= 1 and "1" not in till.received

        # The operator sees it: CLI (reading the database) and ops API.
        code, out = cli(capsys, "commands", "list", "--data", data, "--json")
        assert code == 0
        [command] = json.loads(out)["commands"]
        assert command["tenant"] == TENANT and command["type"] == "till.payment.register"
        assert command["lane"] == "payment:1" and command["attempts"] >= 1
        assert "HTTP 503" in command["last_error"]
        listed = api.get("/ops/api/commands", params={"tenant": TENANT}).json()["commands"]
        assert [c["command_id"] for c in listed] == [command["command_id"]]
        page = api.get(f"/tenants/{TENANT}").text
        assert "Commands being retried" in page and command["command_id"] in page
        assert "Retry now" in page

        # Retry now: attempted at once, not at the end of its backoff.
        before = till.refused["1"]
        code, out = cli(capsys, "commands", "retry", command["command_id"], "--url", live.url)
        assert code == 0, out
        wait_for(lambda: till.refused["1"] > before, seconds=3)

        # Cancel: it becomes a dead letter; the tenant's other work is unaffected.
        wait_for(lambda: _waiting(api, command["command_id"]), seconds=5)
        code, out = cli(
            capsys,
            "commands",
            "cancel",
            command["command_id"],
            "--url",
            live.url,
            "--reason",
            "paid by hand",
        )
        assert code == 0, out
        assert api.get("/ops/api/commands").json()["commands"] == []
        letters = api.get("/ops/api/deadletters").json()["dead_letters"]
        [letter] = [d for d in letters if d["id"] == command["command_id"]]
        assert letter["error"]["kind"] == "cancelled_by_operator"
        assert "paid by hand" in letter["error"]["message"]
        refused = till.refused["1"]
        code, out = cli(capsys, "commands", "cancel", command["command_id"], "--url", live.url)
        assert code == 1  # not pending any more
    assert till.refused["1"] == refused  # never tried again after the cancel


def _waiting(api: Any, command_id: str) -> bool:
    """The command is waiting for its next attempt (not being attempted this moment)."""
    rows = api.get("/ops/api/commands").json()["commands"]
    return any(r["command_id"] == command_id and r["next_at"] > time.time() + 0.2 for r in rows)


def test_retry_and_cancel_refuse_what_is_not_retrying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = new_engine(tmp_path)
    add_tenant(engine)
    payment(engine, "1")
    engine.processor.step()  # queued, never attempted
    assert engine.edge.outbox.retrying() == []
    row = engine.db.conn.execute("SELECT command_id FROM outbox").fetchone()
    engine.db.close()
    data = str(tmp_path)
    code, _ = cli(capsys, "commands", "cancel", row[0], "--data", data, "--offline")
    assert code == 1  # it has not failed: nothing to cancel
    code, _ = cli(capsys, "commands", "retry", "no-such-command", "--data", data, "--offline")
    assert code == 1
    code, out = cli(capsys, "commands", "list", "--data", data)
    assert code == 0 and "no command is waiting for a retry" in out
