"""What an operator's action can run into."""

from __future__ import annotations


class OpsError(Exception):
    """An action that cannot be done; ``status`` is the HTTP status that says why."""

    status = 400


class NotFound(OpsError):
    status = 404


class Conflict(OpsError):
    status = 409
