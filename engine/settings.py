"""Process settings: every ``KASSASYNC_*`` environment variable, read once, in one place.

:meth:`Settings.from_env` reads the environment; :meth:`Settings.with_flags` lays the command
line's flags over it (a flag wins over its variable, the variable over the default). The CLI does
both once, in :func:`engine.cli.util.execute`, and hands the result to every command; the
bootstrap (:mod:`engine.bootstrap`) passes each value explicitly to the runtimes' constructors.
(``SecretBox.from_env``, ``KafkaConfig``'s defaults, the web's admin-token and cookie settings
and the Fortnox app (``engine/fortnox/onboarding.py``) still read the environment themselves;
their variables are here so that the table is complete and a bad value stops the CLI at once.)

``docs/configuration.md`` shows the table :func:`variables_table` renders from this module
(``python -m engine.config_reference`` writes it; a test checks it is up to date). The variables
of the development tools (the test broker, docker compose, the chaos harness) are listed in
:data:`TOOL_VARIABLES` so that the reference names every ``KASSASYNC_*`` variable; those tools
read them themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: What ``KASSASYNC_COOKIE_SECURE`` accepts (engine/web/auth.py reads it when the dashboard
#: starts; checked here too, so that a typo is one line at start, not a traceback later).
COOKIE_SECURE_WORDS = ("1", "true", "yes", "always", "0", "false", "no", "never", "auto")


class SettingsError(ValueError):
    """A ``KASSASYNC_*`` variable or flag has a value that cannot be used."""


def _env(name: str) -> dict[str, Any]:
    return {"env": name}


class Settings(BaseModel):
    """What a Kassasync process is told by its environment and its flags."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: Path = Field(
        default=Path("var/kassasync"),
        description="The data folder: kassasync.db and tokens.db of the embedded runtime, the "
        "Fortnox token store of the Kafka workers. Flag: --data.",
        json_schema_extra=_env("KASSASYNC_DATA"),
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that seals Fortnox tokens, client secrets and till tokens at rest "
        "(urlsafe base64 of 32 bytes; create one with `python -m engine.secrets`). Required by "
        "every command that opens secrets.",
        json_schema_extra=_env("KASSASYNC_SECRET_KEY"),
    )
    secret_key_previous: tuple[SecretStr, ...] = Field(
        default=(),
        description="Comma-separated earlier keys, still accepted for opening while values are "
        "re-sealed with the current key (key rotation).",
        json_schema_extra=_env("KASSASYNC_SECRET_KEY_PREVIOUS"),
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="The dashboard's and ops API's admin token (16+ characters). Unset: the "
        "engine generates one and prints it. The CLI sends it when it acts through a running "
        "engine.",
        json_schema_extra=_env("KASSASYNC_ADMIN_TOKEN"),
    )
    cookie_secure: str = Field(
        default="1",
        description="Whether the dashboard's session cookie is marked Secure: `1` (always), `0` "
        "(never: a dashboard served over plain HTTP on the shop's LAN) or `auto` (when the "
        "request came over HTTPS); see docs/operations.md.",
        json_schema_extra=_env("KASSASYNC_COOKIE_SECURE"),
    )
    public_url: str | None = Field(
        default=None,
        description="The dashboard's public address (https://kassasync.example.se), where a "
        "shop's Fortnox administrator lands after approving the consent link; needed for "
        "`kassasync connect --link` and the dashboard's links.",
        json_schema_extra=_env("KASSASYNC_PUBLIC_URL"),
    )
    dashboard_tz: str = Field(
        default="Europe/Stockholm",
        description="The time zone the dashboard shows times in (the UTC time is in each "
        "time's tooltip); an IANA name such as Europe/Stockholm or UTC.",
        json_schema_extra=_env("KASSASYNC_DASHBOARD_TZ"),
    )
    dashboard_refresh: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="Seconds between automatic reloads of the dashboard's overview, dead-letter, "
        "tenant and system pages; 0 turns it off.",
        json_schema_extra=_env("KASSASYNC_DASHBOARD_REFRESH"),
    )
    fortnox_client_id: str | None = Field(
        default=None,
        description="The installation's Fortnox app: its client id, configured once for every "
        "tenant (a tenant's `fortnox.client_id` overrides it).",
        json_schema_extra=_env("KASSASYNC_FORTNOX_CLIENT_ID"),
    )
    fortnox_client_secret: SecretStr | None = Field(
        default=None,
        description="The Fortnox app's client secret.",
        json_schema_extra=_env("KASSASYNC_FORTNOX_CLIENT_SECRET"),
    )
    fortnox_api_base: str | None = Field(
        default=None,
        description="Fortnox's API (default https://api.fortnox.se; the sandbox's URL in tests).",
        json_schema_extra=_env("KASSASYNC_FORTNOX_API_BASE"),
    )
    fortnox_auth_base: str | None = Field(
        default=None,
        description="Fortnox's OAuth server (default https://apps.fortnox.se).",
        json_schema_extra=_env("KASSASYNC_FORTNOX_AUTH_BASE"),
    )
    fortnox_service_account: bool = Field(
        default=False,
        description="Connect shops as Fortnox service accounts (client credentials with the "
        "company's TenantId): `1`/`true`/`yes`.",
        json_schema_extra=_env("KASSASYNC_FORTNOX_SERVICE_ACCOUNT"),
    )
    url: str | None = Field(
        default=None,
        description="The running engine that `deadletters` and `tenants` act through "
        "(default http://127.0.0.1:8080 when one answers there). Flag: --url.",
        json_schema_extra=_env("KASSASYNC_URL"),
    )
    log_level: str = Field(
        default="INFO",
        description="Log level of the JSON log on stderr: DEBUG, INFO, WARNING, ERROR or "
        "CRITICAL (any case). Flag: --log-level.",
        json_schema_extra=_env("KASSASYNC_LOG_LEVEL"),
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="Address the engine's HTTP server (`run`, `kafka ingest`) binds. Flag: --host.",
        json_schema_extra=_env("KASSASYNC_HTTP_HOST"),
    )
    log_keep_days: float = Field(
        default=1.0,
        ge=0,
        le=3650,
        description="Days of log the embedded store keeps for `kassasync replay` and "
        "investigations: older rows every consumer has read are deleted, and replay starts from "
        "the reconcilers' state where the kept log begins (docs/operations.md, *Retention*). "
        "Delivered commands' outbox rows are kept as long (plus a mark interval: 27 hours for "
        "1 day).",
        json_schema_extra=_env("KASSASYNC_LOG_KEEP_DAYS"),
    )
    retention_interval_seconds: float = Field(
        default=600.0,
        ge=0,
        description="How often the embedded engine's retention loop trims the log, expires done "
        "outbox rows (as old as the kept log) and ingest de-duplication records (past the "
        "redelivery window) and returns free pages to the disk. 0 turns retention off (the store "
        "then grows for ever).",
        json_schema_extra=_env("KASSASYNC_RETENTION_INTERVAL_SECONDS"),
    )
    state_cache_mb: float = Field(
        default=128.0,
        ge=1,
        le=1_048_576,
        description="Megabytes of the reconcilers' records, counted as their JSON, the embedded "
        "engine keeps in memory (as Python objects they take two to three times that in RAM); "
        "past it the least recently used tenants are read from the store again when next "
        "needed (docs/architecture.md, *Guarantees* 1).",
        json_schema_extra=_env("KASSASYNC_STATE_CACHE_MB"),
    )
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        description="Kafka bootstrap servers, HOST:PORT[,HOST:PORT]. Flag: --bootstrap.",
        json_schema_extra=_env("KASSASYNC_KAFKA_BOOTSTRAP"),
    )
    kafka_prefix: str = Field(
        default="",
        description="Prefix of every topic, consumer group and changelog (tests use a fresh "
        "one; production leaves it empty). Flag: --prefix.",
        json_schema_extra=_env("KASSASYNC_KAFKA_PREFIX"),
    )
    kafka_partitions: int = Field(
        default=8,
        ge=1,
        description="Partitions per topic created by `kafka init`; the tenant-to-partition "
        "mapping depends on it. Flag: --partitions.",
        json_schema_extra=_env("KASSASYNC_KAFKA_PARTITIONS"),
    )
    kafka_replication: int = Field(
        default=1,
        ge=1,
        description="Replication factor of the topics `kafka init` creates. Flag: --replication.",
        json_schema_extra=_env("KASSASYNC_KAFKA_REPLICATION"),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> str:
        level = str(value).strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("cookie_secure", mode="before")
    @classmethod
    def _cookie(cls, value: object) -> str:
        word = str(value).strip().lower()
        if word not in COOKIE_SECURE_WORDS:
            raise ValueError(f"{value!r} is not 1, 0 or auto")
        return word

    @field_validator("dashboard_tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone (try Europe/Stockholm or UTC)"
            ) from None
        return value

    @field_validator("secret_key_previous", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment gives (an unset or empty variable: its default)."""
        env = os.environ if environ is None else environ
        given: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            value = env.get(env_name(field.json_schema_extra), "").strip()
            if value:
                given[name] = value
        return cls._checked(given, source="environment")

    def with_flags(self, **flags: object) -> Settings:
        """These settings with the flags that were given (None: not given) laid over them."""
        given = {k: v for k, v in flags.items() if v is not None}
        if not given:
            return self
        return self._checked(self.model_dump() | given, source="flags")

    @classmethod
    def _checked(cls, values: Mapping[str, object], *, source: str) -> Settings:
        try:
            return cls.model_validate(dict(values))
        except ValidationError as invalid:
            first = invalid.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "?"
            field = cls.model_fields.get(name)
            where = env_name(field.json_schema_extra) if field is not None else name
            raise SettingsError(
                f"{where} ({source}): {first['msg'].removeprefix('Value error, ')}"
            ) from None

    # -- what the commands need ---------------------------------------------------------------

    @property
    def engine_url(self) -> str:
        return self.url or DEFAULT_URL


DEFAULT_URL = "http://127.0.0.1:8080"


def env_name(extra: object) -> str:
    """The variable's name from a field's ``json_schema_extra``."""
    if isinstance(extra, dict) and isinstance(extra.get("env"), str):
        return str(extra["env"])
    raise TypeError("every Settings field names its KASSASYNC_* variable")


@dataclass(frozen=True)
class ToolVariable:
    """A ``KASSASYNC_*`` variable read by a development tool, not by the engine."""

    name: str
    default: str
    meaning: str
    read_by: str


TOOL_VARIABLES: tuple[ToolVariable, ...] = (
    ToolVariable(
        "KASSASYNC_KAFKA_PORT",
        "19092",
        "Port of the test broker (its controller listens on port + 1).",
        "deploy/kafka/broker.py",
    ),
    ToolVariable(
        "KASSASYNC_KAFKA_CACHE",
        "<repo>/.cache/kafka",
        "Where the test broker's jars are cached.",
        "deploy/kafka/broker.py",
    ),
    ToolVariable(
        "KASSASYNC_KAFKA_HEAP", "512m", "JVM heap of the test broker.", "deploy/kafka/broker.py"
    ),
    ToolVariable(
        "KASSASYNC_KAFKA_JVM_OPTS",
        "",
        "Extra JVM options of the test broker.",
        "deploy/kafka/broker.py",
    ),
    ToolVariable(
        "KASSASYNC_KAFKA_MVN",
        "mvn",
        "The Maven command that fetches the broker's jars.",
        "deploy/kafka/broker.py",
    ),
    ToolVariable(
        "KASSASYNC_WORKERS",
        "2",
        "How many Kafka workers `docker compose up` starts.",
        "docker-compose.yml",
    ),
    ToolVariable(
        "KASSASYNC_CHAOS_KAFKA_PORT",
        "19592",
        "Port of the broker `make chaos` starts (`make test`'s chaos test: the test broker's "
        "port + 60).",
        "chaos/cli.py",
    ),
    ToolVariable(
        "KASSASYNC_KAFKA_LIFECYCLE_PORT",
        "19192",
        "Port of the brokers the broker's lifecycle tests start (`make test`: the test "
        "broker's port + 50).",
        "tests/kafka_broker/test_kafka_broker_lifecycle.py",
    ),
    ToolVariable(
        "KASSASYNC_TEST_WORKERS",
        "3",
        "How many pytest-xdist processes `make test` runs the suite's parallel pass in (0: one "
        "process).",
        "scripts/test-with-kafka.sh",
    ),
)


def _default_text(name: str) -> str:
    field = Settings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    if default is None or default == ():
        return "(unset)"
    if default == "":
        return "(empty)"
    return f"`{default}`"


def engine_variables() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every variable the engine reads."""
    return [
        (env_name(field.json_schema_extra), _default_text(name), field.description or "")
        for name, field in Settings.model_fields.items()
    ]


def all_variable_names() -> set[str]:
    return {name for name, _d, _m in engine_variables()} | {v.name for v in TOOL_VARIABLES}


def variables_table() -> str:
    """The Markdown tables of docs/configuration.md's environment section."""
    lines = [
        "| Variable | Default | Meaning |",
        "| --- | --- | --- |",
        *(f"| `{name}` | {default} | {meaning} |" for name, default, meaning in engine_variables()),
        "",
        "Read by the development tools only:",
        "",
        "| Variable | Default | Meaning | Read by |",
        "| --- | --- | --- | --- |",
        *(
            f"| `{v.name}` | {f'`{v.default}`' if v.default else '(empty)'} | {v.meaning} | "
            f"`{v.read_by}` |"
            for v in TOOL_VARIABLES
        ),
    ]
    return "\n".join(lines) + "\n"
