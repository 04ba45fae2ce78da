"""Encryption at rest for tokens and client secrets, and a `Secret` wrapper that never leaks.

Values are sealed with AES-256-GCM under a 32-byte key taken from the environment variable
``KASSASYNC_SECRET_KEY`` (urlsafe base64, as printed by :func:`generate_key`). A sealed value
looks like ``v1.<key id>.<urlsafe base64 of nonce + ciphertext>``; the key id lets a previous key
(``KASSASYNC_SECRET_KEY_PREVIOUS``) still open old values while new ones use the current key.
Callers may bind a value to its place (tenant and column) with ``context``: a value copied to
another row then fails to open instead of silently becoming another tenant's token.

Nothing here puts a secret value into an exception message, a ``repr`` or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

KEY_ENV = "KASSASYNC_SECRET_KEY"
PREVIOUS_KEY_ENV = "KASSASYNC_SECRET_KEY_PREVIOUS"
_FORMAT = "v1"
_NONCE_BYTES = 12
REDACTED = "***"


class SecretKeyError(RuntimeError):
    """The encryption key is missing or malformed (the message never contains the key)."""


class SecretKeyMissing(SecretKeyError):
    pass


class SecretDecryptError(ValueError):
    """A sealed value could not be opened: wrong key, wrong context, or tampered data."""


class Secret:
    """A string that must not be shown. ``reveal()`` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", hashlib.sha256(self._value.encode()).digest()))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("Secret values are not picklable")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def _from_any(value: Any) -> Secret:
            return value if isinstance(value, Secret) else Secret(value)

        return core_schema.no_info_plain_validator_function(
            _from_any,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: REDACTED, when_used="always"
            ),
        )


def generate_key() -> str:
    """A new random key for ``KASSASYNC_SECRET_KEY`` (urlsafe base64 of 32 bytes)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def _decode_key(text: str | bytes, source: str) -> bytes:
    raw = text.encode("ascii") if isinstance(text, str) else text
    raw = raw.strip()
    try:
        key = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise SecretKeyError(f"{source} is not urlsafe base64") from None
    if len(key) != 32:
        raise SecretKeyError(
            f"{source} must decode to 32 bytes (got {len(key)}); "
            "create one with: python -m engine.secrets"
        )
    return key


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"kassasync-key-id:" + key).hexdigest()[:8]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SecretBox:
    """Seals and opens secret strings with AES-256-GCM."""

    def __init__(self, key: str | bytes, previous_keys: Iterable[str | bytes] = ()) -> None:
        current = _decode_key(key, "the secret key")
        self._current_id = _key_id(current)
        self._keys: dict[str, AESGCM] = {self._current_id: AESGCM(current)}
        for old in previous_keys:
            raw = _decode_key(old, "a previous secret key")
            self._keys.setdefault(_key_id(raw), AESGCM(raw))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecretBox:
        env = os.environ if environ is None else environ
        key = env.get(KEY_ENV, "").strip()
        if not key:
            raise SecretKeyMissing(
                f"{KEY_ENV} is not set. Kassasync encrypts Fortnox tokens and client secrets "
                f"at rest and needs a key: create one with `python -m engine.secrets` and export "
                f"it as {KEY_ENV}."
            )
        previous = [k for k in env.get(PREVIOUS_KEY_ENV, "").split(",") if k.strip()]
        return cls(key, previous)

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self._current_id!r})"

    def seal(self, value: Secret | str, context: str = "") -> str:
        plain = value.reveal() if isinstance(value, Secret) else value
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current_id].encrypt(
            nonce, plain.encode("utf-8"), context.encode("utf-8")
        )
        return f"{_FORMAT}.{self._current_id}.{_b64(nonce + sealed)}"

    def open(self, token: str, context: str = "") -> Secret:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _FORMAT:
            raise SecretDecryptError("not a sealed Kassasync value")
        aead = self._keys.get(parts[1])
        if aead is None:
            raise SecretDecryptError(
                f"sealed with an unknown key (id {parts[1]}); set {KEY_ENV} "
                f"(or {PREVIOUS_KEY_ENV}) to the key that sealed it"
            )
        try:
            blob = _unb64(parts[2])
            plain = aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretDecryptError(
                "could not open a sealed value (wrong key, wrong context or tampered data)"
            ) from None
        return Secret(plain.decode("utf-8"))

    def needs_reseal(self, token: str) -> bool:
        """True when ``token`` was sealed with a previous key."""
        parts = token.split(".")
        return len(parts) == 3 and parts[1] != self._current_id


def main() -> None:  # pragma: no cover - tiny CLI helper
    print(generate_key())


if __name__ == "__main__":  # pragma: no cover
    main()
