"""How the service runs: the ``[daemon]``, ``[database]`` and ``[retention]`` tables."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from mailcase.config.base import Frozen, is_loopback


class DatabaseConfig(Frozen):
    #: SQLAlchemy URL; default: SQLite file mailcase.db in data_dir
    url: str | None = None
    #: for SQLite: seconds a writer waits for the write lock
    busy_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _postgres_scheme(cls, url: str | None) -> str | None:
        if url is not None and url.split(":", 1)[0].split("+", 1)[0] == "postgres":
            raise ValueError(postgres_hint(url))
        return url


def postgres_hint(url: str) -> str:
    """The fix for a ``postgres://`` URL (libpq's spelling), which SQLAlchemy does not know."""
    rest = url.split("://", 1)[1] if "://" in url else "USER@HOST/DB"
    return f"postgres:// is not a SQLAlchemy URL: write postgresql+psycopg://{_hide_password(rest)}"


def _hide_password(rest: str) -> str:
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        return f"{creds.split(':', 1)[0]}:***@{host}"
    return rest


class RetentionConfig(Frozen):
    #: days raw mail is kept (0 = forever); never purged while its case is
    #: open, nor before its case has been closed this long
    raw_days: int = Field(default=0, ge=0)
    #: days the parsed text is kept (0 = forever); same rule
    text_days: int = Field(default=0, ge=0)
    #: a resolved case the customer has not written to for this many days
    #: closes itself (an event; retention counts from then); 0 = never
    close_resolved_after_days: int = Field(default=7, ge=0)


class DaemonConfig(Frozen):
    #: seconds between polls of a mailbox without IDLE (and of Maildir mailboxes)
    poll_seconds: float = Field(default=60.0, gt=0)
    #: use IMAP IDLE where the server offers it
    idle: bool = True
    #: IDLE is re-issued after this long (RFC 2177: servers may drop it after 29 min)
    idle_reissue_seconds: float = Field(default=540.0, gt=0, le=1700)
    #: an IDLE the server has said nothing on for this long is probed with NOOP
    idle_silence_seconds: float = Field(default=180.0, gt=0)
    #: reconnects back off exponentially (with jitter) up to this
    reconnect_max_seconds: float = Field(default=300.0, gt=0)
    #: how often the service runs the stages, due cutoffs and the outbox
    stage_seconds: float = Field(default=1.0, gt=0)
    batch_seconds: float = Field(default=10.0, gt=0)
    deliver_seconds: float = Field(default=10.0, gt=0)
    #: directory and knowledge-base reloads, quarantine retries, retention
    housekeeping_seconds: float = Field(default=60.0, gt=0)
    #: quarantined mail is retried automatically this many times (backoff 5 min, 30 min, 3 h ...)
    quarantine_retries: int = Field(default=3, ge=0)
    #: "127.0.0.1:9469" serves Prometheus metrics; loopback only
    metrics_listen: str | None = None
    #: several daemons on one PostgreSQL share the mailboxes out: a daemon not
    #: seen for this long is gone and its share is taken over
    registration_seconds: float = Field(default=30.0, ge=5)
    #: a worker whose mailbox another daemon holds tries again after about this long
    lease_retry_seconds: float = Field(default=10.0, gt=0)
    #: while the database is unreachable, workers retry at least this often
    #: (intake resumes within seconds of its return, without a restart)
    database_retry_max_seconds: float = Field(default=5.0, gt=0)
    #: a worker (mailbox, parse) that has shown no sign of life for this long is
    #: hung: the service stops feeding systemd's watchdog, which restarts it
    worker_stale_seconds: float = Field(default=90.0, ge=5)

    @model_validator(mode="after")
    def _check(self) -> DaemonConfig:
        if self.metrics_listen is not None:
            host, _, port = self.metrics_listen.rpartition(":")
            if not port.isdigit() or not is_loopback(host.strip("[]")):
                raise ValueError("metrics_listen: give 127.0.0.1:PORT (metrics stay on the loopback)")
        return self
