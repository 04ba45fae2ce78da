"""The till-PC agent: ``kassasync agent watch DIR --url URL --tenant T --key KEY``.

It runs on the shop's till PC, watches the folder where the till writes its daily SIE files, and
uploads each new file once to the engine (``PUT /v1/sie-files/{tenant}/{name}``,
engine/gateway/sie_files.py), which imports it as ``kassasync import-sie`` does. Then it moves
the file to ``DIR/sent/`` or ``DIR/refused/`` with a short report beside it
(``NAME.report.txt``).

* **Complete files only.** A file is sent once its size and modification time have not changed
  for ``--settle`` seconds (the till may still be writing it). Hidden files, ``*.tmp``,
  ``*.part`` and ``*~`` are never sent; ``--pattern`` narrows the names (default every file).
* **Once.** The engine identifies an upload by its name and content (SHA-256) and vouchers by
  their source identity, so sending a file again books nothing twice. The agent keeps a small
  state file (default ``DIR/.kassasync-agent.json``, written atomically): the engine's answer is
  recorded before the file is moved, so an agent stopped between the two finishes the move on
  restart without asking again; stopped before the answer was recorded, it asks again and the
  engine answers as before.
* **Unreachable engine.** Connection errors, timeouts and 5xx answers are retried with
  exponential backoff (1 s doubling to ``--max-backoff``, 300 s by default, with jitter). A
  wrong key (401) or tenant (404) is not the file's fault: the file stays and the agent retries
  at the slowest pace, logging the reason. Only the engine's refusal of the file's content
  (422, 413, a bad name) moves a file to ``refused/``.
* **Few dependencies.** This module imports only the standard library and httpx, so it can be
  copied to a till PC alone and run as ``python agent.py watch ...`` (docs/sie.md, "The till-PC
  agent"); its log lines are ``event key=value`` through :mod:`logging` for the same reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import fnmatch
import hashlib
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx

log = logging.getLogger("kassasync.agent")

STATE_NAME: Final = ".kassasync-agent.json"
SENT: Final = "sent"
REFUSED: Final = "refused"
_SKIPPED_SUFFIXES: Final = (".tmp", ".part", "~", ".report.txt")
_FIRST_BACKOFF: Final = 1.0
_TIMEOUT: Final = httpx.Timeout(60.0, connect=10.0)

Verdict = Literal["sent", "refused"]


def _event(event: str, level: int = logging.INFO, **fields: object) -> None:
    log.log(level, "%s %s", event, " ".join(f"{k}={v!r}" for k, v in fields.items()))


@dataclass
class Outcome:
    """The engine's final word on one file: where it goes and what the report says."""

    verdict: Verdict
    status: int
    message: str
    problems: list[str] = field(default_factory=list)
    answer: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tracked:
    """A file the agent has seen in the folder and not yet moved."""

    name: str
    size: int
    mtime_ns: int
    #: When the size and modification time were last seen to change (wall clock).
    stable_since: float
    attempts: int = 0
    next_try: float = 0.0
    last_error: str | None = None
    sha256: str | None = None
    outcome: Outcome | None = None


@dataclass
class State:
    files: dict[str, Tracked] = field(default_factory=dict)
    #: Not before this (wall clock) is the engine asked again after it was unreachable.
    engine_next_try: float = 0.0
    engine_failures: int = 0

    @classmethod
    def load(cls, path: Path) -> State:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            files: dict[str, Tracked] = {}
            for name, item in raw.get("files", {}).items():
                outcome = item.pop("outcome", None)
                tracked = Tracked(**item)
                tracked.outcome = None if outcome is None else Outcome(**outcome)
                files[name] = tracked
            return cls(files, float(raw.get("engine_next_try", 0)), int(raw.get("failures", 0)))
        except FileNotFoundError:
            return cls()
        except (ValueError, TypeError, KeyError, AttributeError) as bad:
            # Sending again is safe (the engine answers a repeat as before): start afresh.
            _event("agent.state_unreadable", logging.WARNING, path=str(path), error=str(bad))
            return cls()

    def save(self, path: Path) -> None:
        body = {
            "version": 1,
            "engine_next_try": self.engine_next_try,
            "failures": self.engine_failures,
            "files": {name: dataclasses.asdict(t) for name, t in self.files.items()},
        }
        temporary = path.with_name(path.name + ".new")
        with temporary.open("w", encoding="utf-8") as out:
            json.dump(body, out, ensure_ascii=False, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)


@dataclass(frozen=True)
class Config:
    folder: Path
    url: str
    tenant: str
    key: str
    state_file: Path
    pattern: str = "*"
    interval: float = 2.0
    settle: float = 2.0
    max_backoff: float = 300.0

    def endpoint(self, name: str) -> str:
        return f"{self.url.rstrip('/')}/v1/sie-files/{quote(self.tenant, safe='')}/" + quote(
            name, safe=""
        )


class EngineUnavailable(Exception):
    """The engine could not take the file now (unreachable, 5xx, wrong key): try again later."""


class Agent:
    def __init__(
        self,
        config: Config,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.client = client or httpx.Client(timeout=_TIMEOUT)
        self.clock = clock
        self.state = State.load(config.state_file)

    # -- one pass over the folder -------------------------------------------------------------

    def candidates(self) -> list[os.DirEntry[str]]:
        """The files the till wrote, oldest first (then by name)."""
        found: list[tuple[int, str, os.DirEntry[str]]] = []
        with os.scandir(self.config.folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name.lower().endswith(_SKIPPED_SUFFIXES):
                    continue
                if not fnmatch.fnmatch(name.lower(), self.config.pattern.lower()):
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                found.append((entry.stat().st_mtime_ns, name, entry))
        return [entry for _, _, entry in sorted(found, key=lambda f: (f[0], f[1]))]

    def step(self) -> int:
        """Look at the folder once; send and move what is ready. Returns how many files were
        moved."""
        now = self.clock()
        present: set[str] = set()
        moved = 0
        for entry in self.candidates():
            name = entry.name
            present.add(name)
            stat = entry.stat()
            tracked = self.state.files.get(name)
            if tracked is None or (tracked.size, tracked.mtime_ns) != (
                stat.st_size,
                stat.st_mtime_ns,
            ):
                if tracked is None:
                    _event("agent.file_seen", file=name, size=stat.st_size)
                tracked = Tracked(name, stat.st_size, stat.st_mtime_ns, stable_since=now)
                self.state.files[name] = tracked
                continue
            if now - tracked.stable_since < self.config.settle:
                continue
            if tracked.outcome is None:
                if now < max(tracked.next_try, self.state.engine_next_try):
                    continue
                data = (self.config.folder / name).read_bytes()
                if len(data) != tracked.size:  # written to since the last look: let it settle
                    tracked.size, tracked.stable_since = len(data), now
                    continue
                try:
                    tracked.outcome = self._send(tracked, data)
                except EngineUnavailable as why:
                    self._back_off(tracked, str(why))
                    break  # the engine is away: the other files wait too
                self.state.engine_failures = 0
                self.state.engine_next_try = 0.0
                self._save()  # the answer is kept before the file moves
            if self._move(tracked):
                del self.state.files[name]
                moved += 1
        for gone in set(self.state.files) - present:  # moved or deleted by someone else
            _event("agent.file_gone", file=gone)
            del self.state.files[gone]
        self._save()
        return moved

    def _save(self) -> None:
        self.state.save(self.config.state_file)

    def _back_off(self, tracked: Tracked, reason: str) -> None:
        self.state.engine_failures += 1
        tracked.last_error = reason
        delay = min(self.config.max_backoff, _FIRST_BACKOFF * 2 ** (self.state.engine_failures - 1))
        delay *= random.uniform(0.8, 1.0)
        self.state.engine_next_try = self.clock() + delay
        _event(
            "agent.engine_unavailable",
            logging.WARNING,
            file=tracked.name,
            reason=reason,
            retry_in_seconds=round(delay, 1),
        )

    # -- the engine -----------------------------------------------------------------------------

    def _send(self, tracked: Tracked, data: bytes) -> Outcome:
        tracked.sha256 = hashlib.sha256(data).hexdigest()
        tracked.attempts += 1
        _event("agent.sending", file=tracked.name, bytes=len(data), attempt=tracked.attempts)
        try:
            answer = self.client.put(
                self.config.endpoint(tracked.name),
                content=data,
                headers={
                    "Authorization": f"Bearer {self.config.key}",
                    "Content-Type": "application/octet-stream",
                    "X-Content-SHA256": tracked.sha256,
                },
            )
        except httpx.HTTPError as failed:
            raise EngineUnavailable(f"{type(failed).__name__}: {failed}") from failed
        return self._judge(tracked, answer)

    def _judge(self, tracked: Tracked, answer: httpx.Response) -> Outcome:
        status = answer.status_code
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = str(body.get("error") or body.get("message") or answer.reason_phrase)
        if status in (200, 202):
            _event("agent.sent", file=tracked.name, status=status, repeat=body.get("repeat"))
            return Outcome("sent", status, str(body.get("message", "")), answer=body)
        if status == 422 and "report" in body:
            report = body.get("report") or {}
            problems = [_problem_line(e) for e in report.get("errors", []) if isinstance(e, dict)]
            _event("agent.refused", logging.WARNING, file=tracked.name, problems=len(problems))
            return Outcome("refused", status, str(body.get("message", "")), problems, body)
        if status in (400, 413) and "X-Content-SHA256" not in error:
            _event("agent.refused", logging.WARNING, file=tracked.name, status=status, error=error)
            return Outcome("refused", status, error, answer=body)
        if status in (401, 403, 404):
            raise EngineUnavailable(
                f"the engine answered {status} ({error}): check --url, --tenant and --key"
            )
        raise EngineUnavailable(f"the engine answered {status}: {error}")

    # -- moving -------------------------------------------------------------------------------

    def _move(self, tracked: Tracked) -> bool:
        """Write the report, then move the file beside it; False when the file cannot be moved
        yet (the till still has it open on Windows): tried again on the next pass."""
        outcome = tracked.outcome
        assert outcome is not None
        folder = self.config.folder / (SENT if outcome.verdict == "sent" else REFUSED)
        try:
            folder.mkdir(exist_ok=True)
            target = _free_name(folder, tracked.name)
            report = target.with_name(target.name + ".report.txt")
            report.write_text(self._report(tracked, outcome), encoding="utf-8")
            os.replace(self.config.folder / tracked.name, target)
        except OSError as failed:
            _event("agent.move_failed", logging.WARNING, file=tracked.name, error=str(failed))
            return False
        _event("agent.moved", file=tracked.name, to=str(target.relative_to(self.config.folder)))
        return True

    def _report(self, tracked: Tracked, outcome: Outcome) -> str:
        at = dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat(timespec="seconds")
        lines = [
            f"File: {tracked.name}",
            f"Result: {'received by the engine' if outcome.verdict == 'sent' else 'REFUSED'}"
            f" (HTTP {outcome.status}, {at})",
            f"Engine: {self.config.url} tenant {self.config.tenant}",
            f"SHA-256: {tracked.sha256}",
            f"Attempts: {tracked.attempts}",
        ]
        repeat = bool(outcome.answer.get("repeat"))
        if repeat:
            lines.append("Note: the engine had received this file before; nothing more is booked")
        if outcome.message:
            # A repeat is answered with the engine's answer to the first upload, as it was.
            label = "The engine's answer to the first upload" if repeat else "Message"
            lines.append(f"{label}: {outcome.message}")
        lines.extend(f"Problem: {p}" for p in outcome.problems[:50])
        if len(outcome.problems) > 50:
            lines.append(f"... and {len(outcome.problems) - 50} more problems")
        return "\n".join(lines) + "\n"

    # -- running ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.config.folder.mkdir(parents=True, exist_ok=True)
        _event(
            "agent.started",
            folder=str(self.config.folder),
            url=self.config.url,
            tenant=self.config.tenant,
            waiting=len(self.state.files),
        )
        while not stop.is_set():
            try:
                self.step()
            except OSError as failed:  # the folder is away (a share, a USB disk): look again
                _event("agent.folder_unreadable", logging.WARNING, error=str(failed))
            stop.wait(self.config.interval)
        self._save()
        _event("agent.stopped", waiting=len(self.state.files))


def _problem_line(error: dict[str, Any]) -> str:
    where = [f"line {error['line']}"] if error.get("line") else []
    if error.get("voucher"):
        where.append(f"voucher {error['voucher']}")
    if error.get("value") is not None:
        where.append(f"value '{error['value']}'")
    return (", ".join(where) + ": " if where else "") + str(error.get("message", ""))


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem.2.suffix`` ... when a file of that name is there (the
    till used the name again)."""
    target = folder / name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    number = 1
    while target.exists():
        number += 1
        target = folder / (f"{stem}.{number}.{suffix}" if suffix else f"{name}.{number}")
    return target


# -- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="agent_command", required=True)
    watch = sub.add_parser(
        "watch",
        help="send each new SIE file in DIR to the engine once; move it to sent/ or refused/",
        description="Watch DIR, where the till writes its daily SIE files, and upload each new "
        "file once to the engine, which books it as `kassasync import-sie` does. Each file is "
        "moved to DIR/sent/ or DIR/refused/ with NAME.report.txt beside it. See docs/sie.md.",
    )
    watch.add_argument("folder", metavar="DIR", help="the folder the till writes SIE files to")
    watch.add_argument("--url", required=True, help="the engine, e.g. https://kassasync.example")
    watch.add_argument("--tenant", required=True, help="the shop's tenant id")
    watch.add_argument(
        "--key", help="the tenant's ingest key (it shows in the process list: prefer --key-file)"
    )
    watch.add_argument("--key-file", help="read the ingest key from this file")
    watch.add_argument("--state", help=f"the agent's state file (default DIR/{STATE_NAME})")
    watch.add_argument("--pattern", default="*", help="only names matching this, e.g. '*.si'")
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between looks (2)")
    watch.add_argument(
        "--settle", type=float, default=2.0, help="seconds a file must be unchanged (2)"
    )
    watch.add_argument(
        "--max-backoff", type=float, default=300.0, help="longest wait between retries (300)"
    )
    watch.set_defaults(func=run_watch)


def config_of(args: argparse.Namespace) -> Config:
    key = args.key
    if args.key_file:
        key = Path(args.key_file).read_text(encoding="utf-8").strip()
    if not key:
        raise SystemExit("kassasync agent: give the ingest key with --key-file or --key")
    folder = Path(args.folder)
    return Config(
        folder=folder,
        url=args.url,
        tenant=args.tenant,
        key=key,
        state_file=Path(args.state) if args.state else folder / STATE_NAME,
        pattern=args.pattern,
        interval=args.interval,
        settle=args.settle,
        max_backoff=args.max_backoff,
    )


def run_watch(args: argparse.Namespace) -> int:
    config = config_of(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
        )
    stop = threading.Event()

    def stopping(signum: int, _frame: object) -> None:
        _event("agent.signal", signal=signum)
        stop.set()

    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):  # SIGBREAK: Ctrl-Break on Windows
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stopping)
    agent = Agent(config)
    try:
        agent.run(stop)
    finally:
        agent.client.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``kassasync-agent watch DIR ...`` (and ``python agent.py watch DIR ...``)."""
    parser = argparse.ArgumentParser(prog="kassasync-agent", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
