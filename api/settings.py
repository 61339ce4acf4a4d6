"""Server settings (pydantic-settings, environment prefix ``CUSTODY_``).

Outside ``environment=development`` the server refuses to start with settings that would
break a promise it makes: a SQLite ledger without ``synchronous=FULL`` (a 201 must mean
"survives a crash"), a log key file readable by group or others (threat T20), bearer
tokens living longer than an hour, a missing token secret, an in-memory database.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.core.errors import InvalidInput

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


class Settings(BaseSettings):
    """Everything the server needs to run; read from ``CUSTODY_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CUSTODY_", extra="forbid", frozen=True)

    database_url: Annotated[str, Field(
        min_length=1, description="sqlite:///PATH or postgresql://…")] = "fabric:"
    log_key_path: Path | None = Field(
        default=None, description="the log's checkpoint key file (ledger.keys format); "
        "required unless fabric_network is set")
    fabric_network: Path | None = Field(
        default=None, description="consortium mode: the directory of a Fabric network "
        "('custody network up'); the ledger is then that network's, as fabric_org sees it")
    fabric_org: str | None = Field(
        default=None, description="consortium mode: this server's organisation on the network "
        "(its country code)")
    log_key_passphrase: SecretStr | None = Field(
        default=None, description="passphrase of an encrypted log key file")
    origin: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="the ledger's origin (also the log key's name)")
    environment: Literal["development", "production"] = "development"
    token_secret: SecretStr | None = Field(
        default=None, description="HMAC key for challenges and bearer tokens (>= 32 chars); "
        "shared by all workers. Development generates a random one per process.")
    token_ttl_s: Annotated[int, Field(ge=10, le=24 * 3600)] = 900
    challenge_ttl_s: Annotated[int, Field(ge=5, le=300)] = 60
    evidence_dir: Path | None = Field(
        default=None, description="content-addressed evidence store; uploads off when unset")
    packages_dir: Path | None = Field(
        default=None, description="content-addressed store of evidence packages (encrypted "
        "files moved between agencies); default EVIDENCE_DIR/packages, off without both")
    max_upload_bytes: Annotated[int, Field(ge=1, le=1 << 50)] = 64 * GIB
    max_event_bytes: Annotated[int, Field(ge=1 * KIB, le=16 * MIB)] = 256 * KIB
    max_batch_events: Annotated[int, Field(ge=1, le=1000)] = 256
    page_max: Annotated[int, Field(ge=1, le=10_000)] = 1000
    write_queue: Annotated[int, Field(ge=1, le=100_000)] = 4096
    group_commit_max: Annotated[int, Field(ge=1, le=1000)] = 256
    tls_cert: Path | None = Field(
        default=None, description="TLS certificate chain (PEM); with tls_key, the server "
        "speaks TLS 1.2+ only")
    tls_key: Path | None = Field(
        default=None, description="TLS private key (PEM); refused when group/world-readable")
    tls_client_ca: Path | None = Field(
        default=None, description="mutual TLS: every client must present a certificate "
        "issued by this CA (PEM); its subject O must be the logging-in actor's organisation")
    security_actor: str | None = Field(
        default=None, description="with tls_client_ca: the actor (role auditor or admin) "
        "whose key signs the record of a refused login")
    security_actor_key: Path | None = Field(
        default=None, description="that actor's key file (ledger.keys format)")
    rate_limit_per_address: Annotated[float, Field(ge=0, le=100_000)] = 200.0
    rate_limit_per_actor: Annotated[float, Field(ge=0, le=100_000)] = 100.0
    rate_limit_burst: Annotated[int, Field(ge=1, le=100_000)] = 400
    login_failures_per_actor: Annotated[int, Field(ge=0, le=10_000)] = 5
    login_failures_per_address: Annotated[int, Field(ge=0, le=10_000)] = 20
    login_window_s: Annotated[int, Field(ge=1, le=86_400)] = 300
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed cross-origin requests "
        "(exact, e.g. https://portal.example); none by default")
    witness_keys: list[str] = Field(
        default_factory=list, description="if set (a JSON list of C2SP cosignature verifier "
        "keys), only these witnesses may post cosignatures; anyone may otherwise")

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.fabric_network is not None and not self.fabric_org:
            raise ValueError("fabric_org is required with fabric_network")
        if self.fabric_network is None and (self.database_url == "fabric:"
                                            or self.log_key_path is None):
            raise ValueError("database_url and log_key_path are required (or fabric_network "
                             "and fabric_org)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key")
        if self.tls_client_ca is not None and not (self.security_actor
                                                   and self.security_actor_key):
            raise ValueError("tls_client_ca needs security_actor and security_actor_key: a "
                             "refused login is recorded on the log, signed by that actor")
        for origin in self.cors_origins:
            if origin == "*" or not origin.startswith(("https://", "http://")):
                raise ValueError(f"cors_origins lists exact origins (https://host), not "
                                 f"{origin!r}")
        if self.environment == "development":
            return self
        problems = []
        if self.token_ttl_s > 3600:
            problems.append("token_ttl_s must be at most 3600 s outside development")
        if self.token_secret is None or len(self.token_secret.get_secret_value()) < 32:
            problems.append("token_secret of at least 32 characters is required")
        url = self.database_url
        if url.startswith("sqlite") and (":memory:" in url or url.rstrip("/") == "sqlite:"
                                         or "mode=memory" in url):
            problems.append("an in-memory SQLite database is not durable")
        if problems:
            raise ValueError("unsafe settings for production: " + "; ".join(problems))
        return self

    def package_root(self) -> Path | None:
        """Where packages are stored: ``packages_dir``, else ``evidence_dir/packages``."""
        if self.packages_dir is not None:
            return self.packages_dir
        return None if self.evidence_dir is None else self.evidence_dir / "packages"

    def token_key(self) -> bytes:
        if self.token_secret is not None:
            return self.token_secret.get_secret_value().encode()
        return _DEV_SECRET


_DEV_SECRET = secrets.token_bytes(32)


def check_sqlite_durability(pragmas: dict[str, object], environment: str) -> None:
    """Refuse a SQLite connection that does not honour the durability contract.

    ``pragmas`` are what the live connection reports (``synchronous``: 2 = FULL, 3 = EXTRA;
    ``journal_mode``: wal). Called at startup on a real connection of the store's engine,
    so a URL or engine that overrides the store's pragmas is caught.
    """
    if environment == "development":
        return
    sync = pragmas.get("synchronous")
    if not isinstance(sync, int) or sync < 2:
        raise InvalidInput(f"the SQLite ledger runs with synchronous={sync}, not FULL: an "
                           "acknowledged entry could be lost on power failure")
    if str(pragmas.get("journal_mode", "")).lower() != "wal":
        raise InvalidInput("the SQLite ledger is not in WAL mode")
