"""Configuration: one TOML file -> typed, frozen values.

Unknown keys and wrong types are errors that name the file and the key.
Secrets are never inline: a secret is a table naming a file, an environment
variable, or a systemd credential (``$CREDENTIALS_DIRECTORY/<name>``).

With no configuration file at all, :func:`embedded_defaults` gives a working
demo setup: SQLite under ``./mailcase-data`` and the sample Maildir shipped in
the package.  ``config/mailcase.example.toml`` documents every key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mailcase.config.calendar import CalendarConfig
from mailcase.core.errors import ConfigError
from mailcase.core.states import PostAction

DEMO_MAILDIR = Path(__file__).parent.parent / "demo" / "maildir"
DEMO_ACCOUNTS = Path(__file__).parent.parent / "demo" / "accounts.csv"
DEMO_KB = Path(__file__).parent.parent / "demo" / "kb"
CONFIG_ENV = "MAILCASE_CONFIG"
DEFAULT_CONFIG_PATHS = (Path("/etc/mailcase/mailcase.toml"),)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Secret(_Frozen):
    """Where a secret lives: exactly one of ``file``, ``env``, ``credential``."""

    file: str | None = None
    env: str | None = None
    credential: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Secret:
        given = [k for k in ("file", "env", "credential") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of file, env, credential")
        return self

    def describe(self) -> str:
        if self.file:
            return f"file {self.file}"
        if self.env:
            return f"environment variable {self.env}"
        return f"systemd credential {self.credential}"

    def read(self) -> str:
        """The secret's value, stripped of a trailing newline."""
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"secret: environment variable {self.env} is not set")
            return value.rstrip("\r\n")
        if self.credential:
            creds = os.environ.get("CREDENTIALS_DIRECTORY")
            if not creds:
                raise ConfigError(
                    f"secret: credential {self.credential} asked for, but CREDENTIALS_DIRECTORY "
                    "is not set (run under systemd with LoadCredential=, or use file=)"
                )
            path = Path(creds) / self.credential
        else:
            assert self.file is not None
            path = Path(self.file)
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"secret: cannot read {path}: {exc.strerror}") from exc


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OAuthConfig(_Frozen):
    """OAuth2 for XOAUTH2/OAUTHBEARER logins (Microsoft 365, Google)."""

    token_url: str
    flow: Literal["client_credentials", "refresh_token"] = "client_credentials"
    client_id: str
    client_secret: Secret | None = None
    scope: str | None = None
    #: the first refresh token (refresh_token flow); rotated ones are kept in the database
    refresh_token: Secret | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> OAuthConfig:
        url = self.token_url.lower()
        if not url.startswith("https://"):
            host = url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)[0]
            if not (url.startswith("http://") and is_loopback(host)):
                raise ValueError("token_url: use https:// (http only to 127.0.0.1)")
        if self.flow == "client_credentials" and self.client_secret is None:
            raise ValueError("client_secret: required for the client_credentials flow")
        return self


_START_AT = re.compile(r"^(now|all|uid:\d+|\d{4}-\d{2}-\d{2}(T[0-9:.+\-Z]+)?)$")


class MailboxConfig(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    kind: Literal["imap", "maildir"] = "imap"
    enabled: bool = True
    #: where to start: "now" (everything already there is historical), "all"
    #: (nothing is historical), "uid:N" (UIDs below N are historical) or an
    #: ISO date/time (mail received before it is historical)
    start_at: str = "now"
    max_message_bytes: int = Field(default=25 * 1024 * 1024, gt=0)

    # IMAP
    host: str | None = None
    port: int | None = Field(default=None, gt=0, lt=65536)
    security: Literal["tls", "starttls", "plain"] = "tls"
    ca_file: str | None = None
    username: str | None = None
    #: "password", or "xoauth2" / "oauthbearer" with an oauth table
    auth: Literal["password", "xoauth2", "oauthbearer"] = "password"
    password: Secret | None = None
    oauth: OAuthConfig | None = None
    folder: str = "INBOX"
    post_action: PostAction = PostAction.LEAVE
    move_to: str | None = None
    fetch_chunk_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    fetch_chunk_count: int = Field(default=500, gt=0, le=5000)
    timeout_seconds: float = Field(default=60.0, gt=0)

    # Maildir
    path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _coerce_enums(cls, data: Any) -> Any:
        # strict mode refuses a plain string for an enum; TOML only has strings
        if isinstance(data, dict) and isinstance(data.get("post_action"), str):
            data = dict(data)
            try:
                data["post_action"] = PostAction(data["post_action"])
            except ValueError:
                pass  # left as a string: strict validation names the key
        return data

    @model_validator(mode="after")
    def _check(self) -> MailboxConfig:
        if not _START_AT.match(self.start_at):
            raise ValueError("start_at: use now, all, uid:N or an ISO date")
        if self.kind == "imap":
            needed = ("host", "username", "password") if self.auth == "password" else ("host", "username", "oauth")
            for key in needed:
                if getattr(self, key) is None:
                    raise ValueError(f"{key}: required for an imap mailbox with auth = {self.auth}")
            assert self.host is not None
            if self.security == "plain" and not is_loopback(self.host):
                raise ValueError(
                    "security: plain IMAP is allowed to 127.0.0.1 only; use tls or starttls"
                )
            if self.post_action is PostAction.MOVE and not self.move_to:
                raise ValueError("move_to: required when post_action = move")
        else:
            if self.path is None:
                raise ValueError("path: required for a maildir mailbox")
            if self.post_action is not PostAction.LEAVE:
                raise ValueError("post_action: a maildir mailbox supports leave only")
        return self

    @property
    def imap_port(self) -> int:
        if self.port:
            return self.port
        return 993 if self.security == "tls" else 143

    def start_point(self) -> tuple[str, int | datetime | None]:
        """("now"|"all"|"uid"|"date", value)."""
        if self.start_at in ("now", "all"):
            return self.start_at, None
        if self.start_at.startswith("uid:"):
            return "uid", int(self.start_at[4:])
        value = datetime.fromisoformat(self.start_at.replace("Z", "+00:00"))
        if value.tzinfo is None:
            raise ConfigError(f"start_at {self.start_at!r}: give a UTC offset")
        return "date", value


class DatabaseConfig(_Frozen):
    #: SQLAlchemy URL; default: SQLite file mailcase.db in data_dir
    url: str | None = None
    #: for SQLite: seconds a writer waits for the write lock
    busy_timeout_seconds: float = Field(default=30.0, gt=0)


class IngestConfig(_Frozen):
    #: host names our own MTA writes in "Received: ... by HOST"; for files, the
    #: topmost such header gives received_at.  Empty: the topmost Received.
    receiving_hosts: tuple[str, ...] = ()
    #: worker processes for the full parse, beside the process that fetches
    #: and writes; 0 = one per core but one (at least 1)
    parse_workers: int = Field(default=0, ge=0, le=64)
    #: a received time (Received:, Date:, a file's time, INTERNALDATE) later than
    #: now plus this is not believed: the next source is used, with the reason
    max_clock_skew_minutes: int = Field(default=15, ge=0)
    #: ... nor a Received: or Date: this many days before a mailbox's start point
    #: (a new file dated 1971 is new mail, not history); the file's time is used
    max_backdate_days: int = Field(default=30, ge=0)

    @property
    def workers(self) -> int:
        if self.parse_workers:
            return self.parse_workers
        return max(1, (os.cpu_count() or 2) - 1)


#: phrases an operator adds to the concept rules (scope_concepts.py); none by
#: default -- a bare phrase like "cpt code" fires on "the CPT code field is empty"
DEFAULT_SCOPE: dict[str, tuple[str, ...]] = {"coding": (), "billing": (), "payer": ()}
#: keywords give high at most: critical comes from an explicit marker ("Severity: 1",
#: "[S1]") or from a critical phrase the operator configures on purpose
DEFAULT_SEVERITY: dict[str, tuple[str, ...]] = {
    "critical": (),
    "high": (
        "system down", "system is down", "completely down", "is down for everyone", "nobody can log in",
        "no one can log in", "nobody can work", "outage", "data loss", "production down",
        "cannot submit claims", "can't submit claims", "unable to submit claims", "claims are rejected",
        "cannot print", "urgent", "asap", "emergency", "error 500", "error 503",
        "dringend", "ausfall", "urgente", "en panne", "sistema caído", "spoed",
    ),
    "low": ("feature request", "suggestion", "documentation", "typo", "nice to have", "when you have time"),
}
SEVERITY_LEVELS = {"critical": 1, "high": 2, "normal": 3, "low": 4}


def _tuples(data: Any, keys: tuple[str, ...]) -> Any:
    """TOML has lists; frozen config holds tuples."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for key in keys:
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
        elif isinstance(data.get(key), dict):
            data[key] = {k: tuple(v) if isinstance(v, list) else v for k, v in data[key].items()}
    return data


class RulesConfig(_Frozen):
    #: required: "authserv-id" (trust the topmost Authentication-Results our
    #: own server adds; it must strip forged copies, RFC 8601 §5) or
    #: "insecure-off" (no sender authentication; `status` says so)
    sender_authentication: Literal["authserv-id", "insecure-off"] | None = None
    authserv_id: str | None = None
    #: a header our spam filter sets, and the values that mean spam
    spam_header: str | None = None
    spam_values: tuple[str, ...] = ("yes",)
    reopen_window_days: int = Field(default=14, ge=0)
    notice_period_days: int = Field(default=7, ge=0)
    flood_same_count: int = Field(default=15, ge=1)
    flood_same_seconds: int = Field(default=60, ge=1)
    flood_sender_count: int = Field(default=50, ge=1)
    flood_sender_minutes: int = Field(default=30, ge=1)
    #: more than this many requests from one address with the same subject and a
    #: near-identical text within repeat_request_hours (an autoresponder that
    #: does not thread, a loop across cutoffs) go to review, flagged; the window
    #: spans several days because such a loop turns once per cutoff, twice a day
    repeat_request_count: int = Field(default=3, ge=1)
    repeat_request_hours: int = Field(default=72, ge=1)
    weekly_request_threshold: int = Field(default=25, ge=1)
    #: cosine similarity (0-1) over content words between a request and one of
    #: the account's resolved cases that flags it as a repeat
    repeat_similarity: float = Field(default=0.75, gt=0, le=1)
    pin_max_failures: int = Field(default=5, ge=1)
    pin_failure_hours: int = Field(default=24, ge=1)
    scope: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_SCOPE))
    severity: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_SEVERITY))

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return _tuples(data, ("spam_values", "scope", "severity"))

    @model_validator(mode="after")
    def _check(self) -> RulesConfig:
        if self.sender_authentication == "authserv-id" and not self.authserv_id:
            raise ValueError("authserv_id: required when sender_authentication = authserv-id")
        bad = set(self.severity) - set(SEVERITY_LEVELS)
        if bad:
            raise ValueError(f"severity: unknown level {sorted(bad)[0]!r} (use critical, high, normal, low)")
        return self


class StaffConfig(_Frozen):
    #: staff are never customers: their mail on a case is a staff note
    addresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return _tuples(data, ("addresses", "domains"))


class DirectoryConfig(_Frozen):
    #: a CSV of accounts and people (see `mailcase accounts import --help`)
    #: the service imports at start and whenever the file changes; idempotent
    csv: str | None = None
    #: people of the file's accounts missing from the file are removed
    replace: bool = False
    #: when the file's rows take effect: "import" (when imported) or an ISO
    #: date-time with offset, to backdate a first import so mail already
    #: waiting for a cutoff is judged against it (rules read the directory
    #: as of each cutoff)
    effective: str = "import"

    @model_validator(mode="after")
    def _check(self) -> DirectoryConfig:
        if self.effective != "import":
            try:
                value = datetime.fromisoformat(self.effective.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("effective: use import or an ISO date-time with offset") from None
            if value.tzinfo is None:
                raise ValueError("effective: give a UTC offset")
        return self

    def effective_at(self, now: datetime) -> datetime:
        if self.effective == "import":
            return now
        return datetime.fromisoformat(self.effective.replace("Z", "+00:00"))


class SurveyConfig(_Frozen):
    #: hours after a resolution before its satisfaction survey goes out
    delay_hours: float = Field(default=24.0, ge=0)
    #: no survey to a person surveyed within this many days (across all cases)
    quiet_days: int = Field(default=14, ge=0)


class KbConfig(_Frozen):
    #: a folder of Markdown articles (front matter title: and url:) or a CSV
    #: (title, url, body); reindexed at start and whenever it changes
    path: str | None = None
    #: articles listed in an acknowledgement
    suggestions: int = Field(default=3, ge=0, le=10)
    #: how much of a request an article must cover to be suggested (0-1)
    min_score: float = Field(default=0.3, gt=0, le=1)
    #: an article covering this much of a request flags it "kb-answer"
    answer_score: float = Field(default=0.9, gt=0, le=1)


class RetentionConfig(_Frozen):
    #: days raw mail is kept (0 = forever); never purged while its case is
    #: open, nor before its case has been closed this long
    raw_days: int = Field(default=0, ge=0)
    #: days the parsed text is kept (0 = forever); same rule
    text_days: int = Field(default=0, ge=0)


class SecretsConfig(_Frozen):
    #: the key of every keyed hash: PINs, our Message-IDs, bounce addresses
    hmac_key: Secret | None = None


class OutgoingConfig(_Frozen):
    #: the address acknowledgements and notices come from (replies come back here)
    from_address: str = "support@example.org"
    from_name: str = "Support"
    #: the domain in our Message-IDs; default: the from_address domain
    message_id_domain: str | None = None
    #: the envelope sender base: bounces+<row>-<mac>@domain (VERP); never an
    #: intake address.  Default: bounces@<from_address domain>
    bounce_address: str | None = None
    #: "file" writes each mail as an .eml into file_dir (the demo's default);
    #: "smtp" delivers through the smtp_* server
    transport: Literal["file", "smtp"] = "file"
    #: for transport = "file"; default: <data_dir>/outbox
    file_dir: str | None = None
    smtp_host: str | None = None
    #: default: 465 for tls, 587 for starttls, 25 for plain
    smtp_port: int | None = Field(default=None, gt=0, lt=65536)
    #: "tls" (implicit), "starttls" or "plain" (127.0.0.1 only); certificates verified
    smtp_security: Literal["tls", "starttls", "plain"] = "starttls"
    smtp_ca_file: str | None = None
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    #: log in with XOAUTH2 and this OAuth2 client instead of smtp_password
    smtp_oauth: OAuthConfig | None = None
    smtp_timeout_seconds: float = Field(default=60.0, gt=0)
    #: automatic mail (notices, resolutions, surveys) to one address per 24 h;
    #: acknowledgements of an eligible requester's cases are never capped
    daily_cap_per_address: int = Field(default=10, ge=1)
    #: more matched hard bounces than this within an hour pause suppression
    #: (our own relay failing looks like every customer bouncing) and alert
    bounce_spike_per_hour: int = Field(default=20, ge=1)
    #: templates folder; default: the templates shipped with mailcase
    templates_dir: str | None = None

    @model_validator(mode="after")
    def _check(self) -> OutgoingConfig:
        if self.transport == "smtp":
            if not self.smtp_host:
                raise ValueError("smtp_host: required when transport = smtp")
            if self.smtp_security == "plain" and not is_loopback(self.smtp_host):
                raise ValueError("smtp_security: plain SMTP is allowed to 127.0.0.1 only; use tls or starttls")
            if self.smtp_username and self.smtp_password is None and self.smtp_oauth is None:
                raise ValueError("smtp_password: required with smtp_username (or smtp_oauth)")
        return self

    @property
    def domain(self) -> str:
        return self.message_id_domain or self.from_address.rpartition("@")[2].lower()

    @property
    def bounce_base(self) -> str:
        return (self.bounce_address or f"bounces@{self.from_address.rpartition('@')[2]}").lower()

    @property
    def smtp_port_number(self) -> int:
        if self.smtp_port:
            return self.smtp_port
        return {"tls": 465, "starttls": 587, "plain": 25}[self.smtp_security]


class BatchConfig(_Frozen):
    #: a mailbox unreachable this long after a cutoff no longer holds it back
    #: (the cutoff closes with an alert; its late mail joins the next one)
    mailbox_grace_minutes: int = Field(default=15, ge=0)
    #: a fresh database (no cutoff closed yet) closes cutoffs from the first one
    #: after this time (ISO date-time with offset); unset: after the moment it
    #: first ran the cutoff stage -- never from the oldest mail it holds
    start_at: str | None = None
    #: more than this many business days of missed cutoffs (an outage, a fresh
    #: database with old mail) close as one catch-up batch, with an alert
    catch_up_business_days: int = Field(default=10, ge=1)
    #: subjects too generic to group a requester's mails into one case
    generic_subjects: tuple[str, ...] = (
        "", "help", "question", "questions", "support", "problem", "issue", "urgent", "request",
        "hello", "hi", "(no subject)", "no subject", "hilfe", "frage", "anfrage",
    )

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return _tuples(data, ("generic_subjects",))

    @model_validator(mode="after")
    def _check(self) -> BatchConfig:
        if self.start_at is not None:
            self.start()
        return self

    def start(self) -> datetime | None:
        if self.start_at is None:
            return None
        try:
            value = datetime.fromisoformat(self.start_at.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("start_at: give an ISO date-time with a UTC offset") from None
        if value.tzinfo is None:
            raise ValueError("start_at: give a UTC offset")
        return value


class DaemonConfig(_Frozen):
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


class Config(_Frozen):
    #: where the source file was (None for embedded defaults); for messages
    source: str | None = None
    data_dir: str = "mailcase-data"
    database: DatabaseConfig = DatabaseConfig()
    ingest: IngestConfig = IngestConfig()
    daemon: DaemonConfig = DaemonConfig()
    rules: RulesConfig = RulesConfig()
    staff: StaffConfig = StaffConfig()
    secrets: SecretsConfig = SecretsConfig()
    directory: DirectoryConfig = DirectoryConfig()
    surveys: SurveyConfig = SurveyConfig()
    retention: RetentionConfig = RetentionConfig()
    kb: KbConfig = KbConfig()
    outgoing: OutgoingConfig = OutgoingConfig()
    calendar: CalendarConfig = CalendarConfig()
    batch: BatchConfig = BatchConfig()
    mailboxes: tuple[MailboxConfig, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _lists_to_tuples(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("mailboxes"), list):
                data["mailboxes"] = tuple(data["mailboxes"])
            ingest = data.get("ingest")
            if isinstance(ingest, dict) and isinstance(ingest.get("receiving_hosts"), list):
                data["ingest"] = {**ingest, "receiving_hosts": tuple(ingest["receiving_hosts"])}
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        names = [m.name for m in self.mailboxes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"mailboxes: duplicate name {sorted(dup)[0]!r}")
        if self.rules.sender_authentication is None:
            raise ValueError(
                "rules.sender_authentication: required: choose \"authserv-id\" (with authserv_id, "
                "the id your receiving server writes in Authentication-Results) or \"insecure-off\""
            )
        return self

    def hmac_key(self) -> bytes:
        """The key of mailcase's keyed hashes; required once mail is classified or sent."""
        if self.secrets.hmac_key is None:
            if self.source is None:
                return _demo_key(self.data_dir)
            raise ConfigError(
                f"{self.source}: secrets.hmac_key: required: "
                '{ file = "/etc/mailcase/hmac-key" } holding 32+ random bytes'
            )
        value = self.secrets.hmac_key.read().encode("utf-8")
        if len(value) < 16:
            raise ConfigError(f"{self.source}: secrets.hmac_key: shorter than 16 bytes")
        return value

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{Path(self.data_dir) / 'mailcase.db'}"

    def mailbox(self, name: str) -> MailboxConfig:
        for m in self.mailboxes:
            if m.name == name:
                return m
        raise KeyError(name)


def _demo_key(data_dir: str) -> bytes:
    """The embedded demo's key: random, kept in the data folder (never in the repo)."""
    path = Path(data_dir) / "demo-hmac-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(os.urandom(32).hex())
    return path.read_text().strip().encode()


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or part.startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(exc: ValidationError, where: str) -> str:
    errors = exc.errors()
    first = errors[0]
    key = _dotted(tuple(first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    # a model-level check reports "key: message": move the key to the front
    m = re.match(r"^([a-z_.]+): (.*)$", msg)
    if m and first["type"] == "value_error":
        key = f"{key}.{m.group(1)}" if key != "(top level)" else m.group(1)
        msg = m.group(2)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {key}: {msg}{more}"


def _fix_oauth(table: dict[str, Any], fix: Any) -> dict[str, Any]:
    return {k: ({**v, "file": fix(v["file"])} if isinstance(v, dict) and "file" in v else v) for k, v in table.items()}


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in the file are relative to the file's folder."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not os.path.isabs(value):
            return str(base / value)
        return value

    data = dict(data)
    if "data_dir" in data:
        data["data_dir"] = fix(data["data_dir"])
    boxes = data.get("mailboxes")
    if isinstance(boxes, list):
        new = []
        for box in boxes:
            if isinstance(box, dict):
                box = dict(box)
                for key in ("path", "ca_file"):
                    if key in box:
                        box[key] = fix(box[key])
                pw = box.get("password")
                if isinstance(pw, dict) and "file" in pw:
                    box["password"] = {**pw, "file": fix(pw["file"])}
                if isinstance(box.get("oauth"), dict):
                    box["oauth"] = _fix_oauth(box["oauth"], fix)
            new.append(box)
        data["mailboxes"] = new
    for section, keys in (("outgoing", ("file_dir", "templates_dir", "smtp_ca_file")), ("directory", ("csv",)),
                          ("kb", ("path",))):
        table = data.get(section)
        if isinstance(table, dict):
            data[section] = {k: (fix(v) if k in keys else v) for k, v in table.items()}
    out = data.get("outgoing")
    if isinstance(out, dict) and isinstance(out.get("smtp_password"), dict) and "file" in out["smtp_password"]:
        out = {**out, "smtp_password": {**out["smtp_password"], "file": fix(out["smtp_password"]["file"])}}
    if isinstance(out, dict) and isinstance(out.get("smtp_oauth"), dict):
        out = {**out, "smtp_oauth": _fix_oauth(out["smtp_oauth"], fix)}
    if out is not None:
        data["outgoing"] = out
    secrets = data.get("secrets")
    if isinstance(secrets, dict):
        data["secrets"] = {
            k: ({**v, "file": fix(v["file"])} if isinstance(v, dict) and "file" in v else v)
            for k, v in secrets.items()
        }
    return data


def parse_config(data: dict[str, Any], where: str, base: Path | None = None) -> Config:
    # inline secrets get their own message: it is the mistake most worth explaining
    inline = [
        f"mailboxes[{i}].password"
        for i, box in enumerate(data.get("mailboxes") or [])
        if isinstance(box, dict) and isinstance(box.get("password"), str)
    ]
    outgoing = data.get("outgoing")
    if isinstance(outgoing, dict) and isinstance(outgoing.get("smtp_password"), str):
        inline.append("outgoing.smtp_password")
    secrets = data.get("secrets")
    if isinstance(secrets, dict):
        inline += [f"secrets.{k}" for k, v in secrets.items() if isinstance(v, str)]
    if inline:
        raise ConfigError(
            f"{where}: {inline[0]}: inline secrets are not allowed; "
            'use { file = "..." } or { env = "..." } or { credential = "..." }'
        )
    if "source" in data:
        raise ConfigError(f"{where}: source: unknown key")
    if base is not None:
        data = _resolve_paths(data, base)
    try:
        return Config.model_validate({**data, "source": where})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None


def load_config(path: Path) -> Config:
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read configuration: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    return parse_config(data, where, base=path.resolve().parent)


def embedded_defaults(data_dir: str | None = None) -> Config:
    """The demo setup: SQLite in ./mailcase-data, the sample Maildir, no servers."""
    return Config(
        source=None,
        data_dir=data_dir or os.environ.get("STATE_DIRECTORY") or "mailcase-data",
        mailboxes=(
            MailboxConfig(name="sample", kind="maildir", path=str(DEMO_MAILDIR), start_at="all"),
        ),
        # the sample mails carry Authentication-Results from this (imaginary) server
        rules=RulesConfig(sender_authentication="authserv-id", authserv_id="mx.support.example"),
        staff=StaffConfig(domains=("support.example",)),
        outgoing=OutgoingConfig(from_address="support@support.example", from_name="Example Support"),
        # the sample mail waits for cutoffs in November 2026: the demo
        # directory counts from before them
        directory=DirectoryConfig(csv=str(DEMO_ACCOUNTS), effective="2026-11-01T00:00:00Z"),
        kb=KbConfig(path=str(DEMO_KB)),
        # ... and cutoffs close from then on (a fresh database otherwise starts at the next one)
        batch=BatchConfig(start_at="2026-11-01T00:00:00Z"),
    )


def find_config(explicit: str | None) -> Config:
    """The configuration the CLI runs with: --config, $MAILCASE_CONFIG, /etc, or the demo."""
    if explicit:
        return load_config(Path(explicit))
    env = os.environ.get(CONFIG_ENV)
    if env:
        return load_config(Path(env))
    for path in DEFAULT_CONFIG_PATHS:
        if path.exists():
            return load_config(path)
    return embedded_defaults()

