from __future__ import annotations

import pickle

import pytest
from pydantic import BaseModel

from engine.fortnox.tokens import AppCredentials, TokenSet
from engine.secrets import (
    KEY_ENV,
    PREVIOUS_KEY_ENV,
    Secret,
    SecretBox,
    SecretDecryptError,
    SecretKeyError,
    SecretKeyMissing,
    generate_key,
)


def test_round_trip_and_context_binding(box: SecretBox) -> None:
    sealed = box.seal(Secret("refresh-abc"), "shop-1:refresh_token")
    assert "refresh-abc" not in sealed
    assert box.open(sealed, "shop-1:refresh_token").reveal() == "refresh-abc"
    with pytest.raises(SecretDecryptError):
        box.open(sealed, "shop-2:refresh_token")


def test_each_seal_uses_a_fresh_nonce(box: SecretBox) -> None:
    assert box.seal("x") != box.seal("x")


def test_wrong_key_and_tampering_fail_without_leaking(box: SecretBox) -> None:
    sealed = box.seal("token-value")
    other = SecretBox(generate_key())
    with pytest.raises(SecretDecryptError) as info:
        other.open(sealed)
    assert "token-value" not in str(info.value)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretDecryptError):
        box.open(tampered)


def test_previous_key_still_opens_old_values(monkeypatch: pytest.MonkeyPatch) -> None:
    old_key = generate_key()
    old = SecretBox(old_key)
    sealed = old.seal("legacy")
    monkeypatch.setenv(KEY_ENV, generate_key())
    monkeypatch.setenv(PREVIOUS_KEY_ENV, old_key)
    box = SecretBox.from_env()
    assert box.open(sealed).reveal() == "legacy"
    assert box.needs_reseal(sealed)
    assert not box.needs_reseal(box.seal("new"))


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(SecretKeyMissing, match=KEY_ENV):
        SecretBox.from_env()


def test_malformed_key_is_rejected_without_echoing_it() -> None:
    with pytest.raises(SecretKeyError) as info:
        SecretBox("c2hvcnQ=")
    assert "c2hvcnQ" not in str(info.value)


def test_secret_never_shows() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert secret == Secret("hunter2")
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_models_holding_secrets_redact_repr_and_dumps() -> None:
    tokens = TokenSet(
        client_id="c",
        access_token=Secret("access-xyz"),
        refresh_token=Secret("refresh-xyz"),
        expires_at=1.0,
    )
    app = AppCredentials(client_id="c", client_secret=Secret("client-secret-xyz"))
    for model in (tokens, app):
        assert isinstance(model, BaseModel)
        text = repr(model) + str(model) + model.model_dump_json() + str(model.model_dump())
        assert "xyz" not in text
