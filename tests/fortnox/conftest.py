from __future__ import annotations

import pytest

from engine.secrets import KEY_ENV, SecretBox, generate_key


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = generate_key()
    monkeypatch.setenv(KEY_ENV, key)
    return key


@pytest.fixture
def box(secret_key: str) -> SecretBox:
    return SecretBox(secret_key)
