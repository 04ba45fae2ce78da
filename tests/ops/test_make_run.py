"""``make run`` as a newcomer meets it: the login page and the admin token printed last (the log
in a file, all JSON), the printed data folder and secret key enough for ``kassasync status``, and a
busy port one clear line that names ``PORT=``."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ops.commands import REPO, Background, Shell, free_port, user_env, wait_until


@contextlib.contextmanager
def make_run(port: int) -> Iterator[Background]:
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=REPO,
        env=user_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    running = Background(f"make run PORT={port}", proc)
    try:
        yield running
    finally:
        running.stop(seconds=120)


@pytest.mark.slow
def test_make_run_ends_with_the_login_and_the_cli_works_on_its_data(tmp_path: Path) -> None:
    port = free_port()
    with make_run(port) as demo:
        demo.wait_for_output(r"Ctrl-C stops the demo", seconds=120)
        shown = "".join(demo.out)
        url = re.search(r"1\. Open\s+(\S+)", shown)
        token = re.search(r"2\. Paste\s+(\S+)", shown)
        export = re.search(r"^\s*export (.+)$", shown, re.MULTILINE)
        assert url and token and export, shown
        assert url.group(1) == f"http://127.0.0.1:{port}/login"
        # The banner is the last thing on the terminal: nothing after it on either stream (make
        # may have printed pip's notes before it, when it had to install first).
        err_before = "".join(demo.err)
        time.sleep(3)
        assert "".join(demo.out).rstrip().endswith("Ctrl-C stops the demo."), str(demo)
        assert "".join(demo.err) == err_before, str(demo)
        assert '"event"' not in err_before, "log lines on the terminal"

        # The login page takes the printed token.
        login = httpx.post(
            url.group(1),
            data={"token": token.group(1), "next": "/"},
            headers={"Origin": f"http://127.0.0.1:{port}"},
            timeout=10,
        )
        assert login.status_code == 303 and "kassasync_session" in login.headers["set-cookie"]

        # The printed export line is all the CLI needs to work on the demo's data.
        variables = dict(word.split("=", 1) for word in shlex.split(export.group(1)))
        assert set(variables) == {
            "KASSASYNC_DATA",
            "KASSASYNC_SECRET_KEY",
            "KASSASYNC_ADMIN_TOKEN",
            "KASSASYNC_URL",
        }
        # The CLI's actions go through this demo's engine, whatever answers on port 8080.
        assert variables["KASSASYNC_URL"] == f"http://127.0.0.1:{port}", shown
        shell = Shell(tmp_path, user_env(**variables))
        status = shell.run("kassasync status --json")
        assert status.code in (0, 2) and "Traceback" not in status.err, str(status)
        [tenant] = status.json()["tenants"]
        assert tenant["tenant"] == "demo"
        letters = shell.run("kassasync deadletters list --json")
        assert letters.code == 0, str(letters)

        log_file = Path(variables["KASSASYNC_DATA"]) / "kassasync.log"
        wait_until(lambda: log_file.stat().st_size > 0, seconds=30)
    # Ctrl-C: the demo winds down and prints its summary (make itself then ends by the signal).
    assert demo.code in (0, -signal.SIGINT), str(demo)
    assert '"drift"' in "".join(demo.out), str(demo)
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert lines, "the log file is empty"
    for line in lines:
        record = json.loads(line)  # every line JSON: no plain-text library lines
        assert "event" in record and "level" in record, line
    assert not any("HTTP Request:" in line for line in lines)


def test_a_busy_port_is_one_line_that_says_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        shell = Shell(tmp_path, user_env())
        result = shell.run(f"kassasync demo --http-port {port}")
        with make_run(port) as via_make:
            via_make.proc.wait(timeout=120)
    assert result.code == 2, str(result)
    [line] = result.err.strip().splitlines()
    assert f"port {port} is in use" in line and f"PORT={port + 1}" in line, line
    assert not result.out.strip(), "no token for the wrong process"
    assert via_make.proc.returncode != 0
    assert f"kassasync: port {port} is in use" in "".join(via_make.err)
    assert "Traceback" not in "".join(via_make.err)
