"""Running ``kassasync`` as a user does: the installed command, in a subprocess, in a folder of
its own, with only the environment a user would have set."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: The documentation whose command lines the suite runs.
DOCUMENTED = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def documented_lines() -> dict[str, str]:
    """Every ``kassasync COMMAND ...`` line inside a fenced block of the README and docs/*.md
    (its trailing ``# comment`` dropped), with where it is written. A line whose second word is
    no command (a Fortnox comment that starts with "kassasync") is not a command line."""
    from engine.cli.main import build_parser

    commands = {
        name
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }
    found: dict[str, str] = {}
    for path in DOCUMENTED:
        fenced = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            text = line.strip()
            words = text.split()
            if fenced and len(words) > 1 and words[0] == "kassasync" and words[1] in commands:
                command = re.split(r"\s{2,}#\s", text)[0].strip()
                found.setdefault(command, f"{path.relative_to(REPO)}:{number}")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: the venv's bin on PATH, no ``KASSASYNC_*`` but the
    ones given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSASYNC_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"  # rich tables as a wide terminal shows them
    env.update(extra)
    return env


@dataclass(frozen=True)
class Result:
    line: str
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def __str__(self) -> str:
        return f"$ {self.line}\n(exit {self.code})\n{self.out[-3000:]}\n{self.err[-3000:]}"


class Shell:
    """A user's terminal: a working folder and an environment."""

    def __init__(self, cwd: Path, env: Mapping[str, str]) -> None:
        self.cwd = cwd
        self.env = dict(env)

    def argv(self, line: str) -> list[str]:
        words = shlex.split(line)
        assert words[0] == "kassasync", line
        return [str(BIN / "kassasync"), *words[1:]]

    def run(self, line: str, timeout: float = 120, **env: str) -> Result:
        done = subprocess.run(
            self.argv(line),
            cwd=self.cwd,
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(line, done.returncode, done.stdout, done.stderr)

    def run_all(self, *lines: str) -> list[Result]:
        """Commands that only read, run at once (as from several terminals)."""
        with ThreadPoolExecutor(max_workers=len(lines)) as pool:
            return list(pool.map(self.run, lines))

    @contextlib.contextmanager
    def background(self, line: str, **env: str) -> Iterator[Background]:
        proc = subprocess.Popen(
            self.argv(line),
            cwd=self.cwd,
            env=self.env | env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        running = Background(line, proc)
        try:
            yield running
        finally:
            running.stop()


class Background:
    """A long-running command: its output read as it comes, stopped with Ctrl-C (SIGINT)."""

    def __init__(self, line: str, proc: subprocess.Popen[str]) -> None:
        self.line = line
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self.code: int | None = None
        self._readers = [
            threading.Thread(target=self._read, args=(proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            into.append(line)

    def wait_for_output(self, pattern: str, seconds: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = re.search(pattern, "".join(self.out))
            if found:
                return found
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the readers' last lines
                found = re.search(pattern, "".join(self.out))
                if found:
                    return found
                raise AssertionError(f"{self} ended before printing {pattern!r}")
            time.sleep(0.05)
        raise AssertionError(f"{self} did not print {pattern!r} in {seconds} s")

    def stop(self, seconds: float = 30) -> int:
        if self.code is None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.code = self.proc.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.code = self.proc.wait()
            for reader in self._readers:
                reader.join(timeout=5)
        return self.code

    def __str__(self) -> str:
        return (
            f"$ {self.line} (exit {self.proc.poll()})\n"
            f"{''.join(self.out)[-3000:]}\n{''.join(self.err)[-3000:]}"
        )


class RefusingTill:
    """A till back office that answers every command 422, so every command becomes a dead
    letter an operator can list, retry and discard."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b'{"error": "the back office refuses everything today"}'
                self.send_response(422)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/kassasync/commands"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RefusingTill:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(predicate: Any, seconds: float = 30, every: float = 0.2) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)
