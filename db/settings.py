"""Runwatch settings: one typed object, read from `RUNWATCH_*` environment variables."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from db.models import Role


class Settings(BaseSettings):
    """Every setting Runwatch reads; no other code looks at the environment."""

    model_config = SettingsConfigDict(env_prefix="RUNWATCH_", extra="ignore")

    database_url: str = Field(
        "sqlite:///data/runwatch.db",
        description="SQLAlchemy URL of the database (SQLite file or postgresql+psycopg://).",
    )
    heartbeat_s: float = Field(
        5.0, gt=0, description="Seconds between heartbeats: a running run's and a worker's row."
    )
    orphan_timeout_s: float = Field(
        60.0, gt=0, description="A running run whose heartbeat is older than this is interrupted."
    )
    idle_transaction_timeout_s: float = Field(
        60.0,
        ge=0,
        description="PostgreSQL ends a session of Runwatch's that has kept a transaction open "
        "without a statement for longer than this (a process frozen or cut off mid-batch), so "
        "the row locks it held no longer hold up the resumed run; 0 leaves it to the server.",
    )
    progress_interval_s: float = Field(
        1.0, ge=0, description="Least seconds between two progress events of one run."
    )
    worker_poll_s: float = Field(1.0, gt=0, description="Seconds a worker waits between claims.")
    worker_lost_after_s: float = Field(
        30.0,
        gt=0,
        description="A worker whose registry heartbeat is older than this is shown as lost "
        "(keep it several times `heartbeat_s`).",
    )
    worker_enabled: bool = Field(
        True, description="Start the in-process worker thread inside the Streamlit app."
    )
    scheduler_enabled: bool = Field(
        True, description="Whether workers enqueue the runs of the jobs' cron schedules."
    )
    schedule_catchup_max: int = Field(
        10, ge=1, description="Most missed ticks a job with catch-up policy `all` runs."
    )
    schedule_grace_s: float = Field(
        60.0, ge=0, description="A tick enqueued later than this counts as missed."
    )
    api_host: str = Field("127.0.0.1", description="Address `runwatch serve-api` listens on.")
    api_port: int = Field(8000, description="Port `runwatch serve-api` listens on.")
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed to call the API (`*` for any)."
    )
    api_worker_enabled: bool = Field(
        False, description="Start a worker thread inside `runwatch serve-api` (the app has one)."
    )
    cache_ttl_s: float = Field(
        1.0, ge=0, description="Seconds the app caches the queries behind one refresh tick."
    )
    actor: str = Field("analyst", description="Name recorded as the actor of app actions.")
    auth: Literal["none", "password", "oidc"] = Field(
        "none",
        description="Who may do what: `none` (everyone is admin; the API serves loopback only), "
        "`password` or `oidc` (people sign in to the app; the API needs a bearer token).",
    )
    session_minutes: int = Field(
        480, ge=1, description="A signed-in app session ends this many minutes after sign-in."
    )
    lockout_attempts: int = Field(
        5, ge=1, description="Failed sign-ins in a row that lock an account."
    )
    lockout_minutes: int = Field(
        15, ge=1, description="How long a locked account refuses every sign-in."
    )
    oidc_role_claim: str = Field(
        "runwatch_role", description="The OIDC claim that holds a person's role (auth `oidc`)."
    )
    oidc_default_role: Role = Field(
        Role.VIEWER, description="The role of an OIDC sign-in whose claim names no role."
    )
    token: SecretStr = Field(
        SecretStr(""),
        description="An API token the CLI acts as (its name and role) instead of the local admin.",
    )
    # alerts (etl/alerts.py, etl/notify.py)
    alert_check_s: float = Field(
        10.0, gt=0, description="Seconds between two alert checks of one worker."
    )
    alert_timeout_s: float = Field(
        5.0, gt=0, description="Seconds one delivery attempt (webhook POST, SMTP session) may take."
    )
    alert_retries: int = Field(
        3, ge=0, description="Further attempts after a failed delivery, with doubling waits."
    )
    alert_backoff_s: float = Field(
        1.0, ge=0, description="Wait before the first retry of a delivery; doubled for each next."
    )
    webhook_secret: SecretStr = Field(
        SecretStr(""), description="Key of the webhooks' HMAC-SHA256 signature (unsigned if empty)."
    )
    smtp_host: str = Field("", description="SMTP server of e-mail alerts (none: e-mail fails).")
    smtp_port: int = Field(587, description="Port of the SMTP server.")
    smtp_user: str = Field("", description="SMTP login (none: no login).")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password.")
    smtp_from: str = Field("runwatch@localhost", description="Sender address of e-mail alerts.")
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP session with STARTTLS.")
    smtp_ca_file: str = Field(
        "", description="PEM file of the CA(s) to trust for STARTTLS (empty: the system's)."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read once from the environment."""
    return Settings()
