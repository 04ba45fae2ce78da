"""The ``kassasync`` command line, one module per group of commands: ``main`` builds the parser
and runs a command, ``util`` is the one entry every command runs through (settings read once, a
user's mistake one line and exit 2), ``ops`` the operator's commands (status, dead letters,
commands, tenants), ``bookkeeping`` exports, SIE import and ledgers, ``connect`` Fortnox consent.
The Kafka runtime's commands live with it, in ``engine/kafka/cli.py``."""

from __future__ import annotations

from engine.cli.main import main

__all__ = ["main"]
