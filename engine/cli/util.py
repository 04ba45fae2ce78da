"""What every ``kassasync`` command shares: one-line errors with exit status 2, and the settings
read once from the environment and the flags (:func:`execute`)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import structlog

from engine.logging import configure
from engine.secrets import SecretDecryptError, SecretKeyError
from engine.settings import Settings, SettingsError

#: Exit status of a usage or configuration error (argparse's, kept for every command).
USAGE = 2

log = structlog.get_logger("kassasync.cli")


class CliError(SystemExit):
    """A mistake the user can fix: printed as one line ``kassasync: <message>``, exit status 2.

    A :class:`SystemExit` so that a command can raise it from anywhere; its text is the message
    and its ``code`` is 2.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = USAGE
        self.message = message

    def __str__(self) -> str:
        return self.message


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is behind ``--help``)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("kassasync").strip()
        where = f"{command}: " if command else ""
        raise CliError(f"{where}{message} (see {self.prog} --help)")


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings :func:`execute` resolved for this command line (resolved here, once, when
    a caller parsed the command line itself and calls the command directly)."""
    settings = getattr(args, "settings", None)
    if isinstance(settings, Settings):
        return settings
    try:
        return resolve(args, Settings.from_env())
    except SettingsError as bad:
        raise CliError(str(bad)) from None


def resolve(args: argparse.Namespace, environ: Settings) -> Settings:
    """The environment's settings with this command line's flags laid over them; ``args.data``
    is then the data folder to use (flag, else ``KASSASYNC_DATA``, else the default)."""
    settings = environ.with_flags(
        data=getattr(args, "data", None),
        log_level=getattr(args, "main_log_level", None),
        url=getattr(args, "url", None),
        http_host=getattr(args, "http_host", None),
        kafka_bootstrap=getattr(args, "bootstrap", None),
        kafka_prefix=getattr(args, "prefix", None),
        kafka_partitions=getattr(args, "partitions", None),
        kafka_replication=getattr(args, "replication", None),
    )
    if hasattr(args, "data"):
        args.data = str(settings.data)
    args.settings = settings
    return settings


def iso_date(text: str) -> dt.date:
    """An argparse type: a calendar date, YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[object]]) -> int:
    """Run ``main(stop)`` until SIGINT or SIGTERM sets ``stop``; exit status 0."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
    return 0


def fail(message: str) -> int:
    print(f"kassasync: {message}", file=sys.stderr, flush=True)
    return USAGE


def execute(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, resolve the settings once, configure logging, run the command. A mistake the user
    can fix is one line on stderr and exit status 2, never a traceback."""
    from engine.tenants import ConfigError

    try:
        try:
            environ = Settings.from_env()
            args = parser.parse_args(argv)
            settings = resolve(args, environ)
        except SettingsError as bad:
            raise CliError(str(bad)) from None
        configure(settings.log_level)
        log.debug("cli.command", command=getattr(args, "command", None), data=str(settings.data))
        try:
            result = args.func(args)
        except (ConfigError, SecretKeyError, SecretDecryptError) as bad:
            raise CliError(str(bad)) from None
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as bad:
            # A path the user gave that cannot be used (other OS errors keep their traceback).
            where = f"{bad.filename}: " if bad.filename is not None else ""
            raise CliError(f"{where}{bad.strerror or bad}") from None
    except CliError as error:
        fail(error.message)
        raise
    return int(result or 0)
