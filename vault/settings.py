"""Settings: the only module that reads environment variables.

Development runs on embedded defaults (SQLite, filesystem blobs, a generated keyring, antivirus
off). The production profile (``VAULT_ENV=production``) refuses each of those defaults unless the
operator names it explicitly, so a forgotten variable never ships a development setup.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import date, datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

DEV_ISSUER = "http://127.0.0.1:8000"
# The longest VAULT_KEYRING_RELOAD_SECONDS a replica may run with: `vault keys kek` waits twice this
# and a second after an activation before it retires an older version, whatever its own value.
KEYRING_RELOAD_MAX_SECONDS = 5.0


class ConfigError(Exception):
    """The configuration cannot run; the message says which variable and what to do."""


@lru_cache(maxsize=8)
def proxy_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """VAULT_TRUSTED_PROXIES parsed once (the client address is looked up on many requests)."""
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in value.split(",") if e.strip())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAULT_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    issuer: str = DEV_ISSUER
    data_dir: Path = Path("./var")
    database_url: str | None = None

    storage_backend: Literal["fs", "s3"] = "fs"
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Seconds to open a connection to S3 and to wait for its next bytes (each of botocore's three
    # attempts): a store that stalls answers 503 instead of holding a worker.
    s3_connect_timeout_seconds: int = Field(default=5, ge=1, le=300)
    s3_read_timeout_seconds: int = Field(default=30, ge=1, le=3600)
    # Minutes after which an unfinished multipart upload (a replica killed mid-upload) is abandoned:
    # `vault storage reconcile` reports and aborts older ones.
    multipart_abandon_minutes: int = Field(default=24 * 60, ge=1)

    antivirus: Literal["clamd", "off"] = "off"
    clamd_address: str | None = None
    # Seconds to connect to clamd and for each exchange; the wait for a verdict adds 0.5 s per MiB
    # sent (vault.storage.antivirus.verdict_timeout).
    clamd_timeout_seconds: int = Field(default=30, ge=1, le=3600)

    key_provider: Literal["local", "aws-kms"] = "local"
    keyring_file: Path | None = None
    # Every process looks at the keyring file again at most this often (and whenever it meets a KEK
    # version it does not hold): a version added or activated by ``vault keys kek`` reaches every
    # replica without a restart. Older versions may be retired 2 × this + 1 s after an activation.
    keyring_reload_seconds: float = Field(default=2.0, gt=0, le=KEYRING_RELOAD_MAX_SECONDS)
    kms_key_id: str | None = None
    kms_endpoint_url: str | None = None
    kms_region: str = "eu-west-3"

    smtp_url: SecretStr | None = None
    mail_from: str = "Citizen Vault <no-reply@localhost>"
    # Who runs the background jobs (mail, retention, erasures left to a job, validity alerts):
    # threads of each web process ("app", one command in development) or `vault worker` ("worker":
    # procrastinate's queue on PostgreSQL, required in production there). ``mail_sender`` is its old
    # name (VAULT_MAIL_SENDER), still read when VAULT_JOBS is unset.
    jobs: Literal["app", "worker"] = "app"
    mail_sender: Literal["app", "worker"] | None = None
    # When the daily retention runs (cron, in UTC), and a worker that sent no heartbeat this long is
    # taken for dead: its running jobs go back to the queue for another worker.
    retention_schedule: str = "0 3 * * *"
    jobs_stalled_seconds: int = Field(default=60, ge=3, le=3600)
    # A job of the queue that failed for good (every attempt) stays this long for the operators
    # (`vault worker --status`, the metrics), then the daily retention deletes it.
    jobs_failed_retention_days: int = Field(default=30, ge=1, le=3650)
    # An erasure from the register with more objects than this leaves their deletion (and the
    # certificate) to a job; fewer are deleted while the DPO waits.
    erasure_inline_objects: int = Field(default=200, ge=0)
    # How often the sender looks, how long delivered mail is kept.
    mail_poll_seconds: int = Field(default=5, ge=1, le=3600)
    mail_retention_days: int = Field(default=7, ge=1, le=365)
    # A mail still failing this long after it was written is given up (marked failed, then purged).
    mail_give_up_hours: int = Field(default=72, ge=1, le=24 * 30)

    # "S'identifier avec FranceConnect" for citizens, ProConnect for staff: this service is then a
    # relying party of theirs (vault.auth.federation). All three of a kind, or none.
    franceconnect_issuer: str | None = None  # e.g. https://oidc.franceconnect.gouv.fr/api/v2
    franceconnect_client_id: str | None = None
    franceconnect_client_secret: SecretStr | None = None
    proconnect_issuer: str | None = None  # e.g. https://auth.agentconnect.gouv.fr/api/v2
    proconnect_client_id: str | None = None
    proconnect_client_secret: SecretStr | None = None

    city_name: str = "Votre commune"
    # The city's time zone: "today" for deadlines, validity dates and the register (the server
    # itself may run on UTC, as containers do).
    timezone: str = "Europe/Paris"
    city_logo_url: str | None = None
    theme_color: str = Field(default="#1d4f91", pattern=r"^#[0-9a-fA-F]{6}$")

    # Accounts and sessions.
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_absolute_hours: int = Field(default=12, ge=1, le=24 * 30)
    password_reset_minutes: int = Field(default=30, ge=5, le=24 * 60)
    email_verification_hours: int = Field(default=48, ge=1, le=24 * 30)
    login_free_failures_per_account: int = Field(default=5, ge=1)
    # A city hall's counter PCs share one public address: the per-address budget is larger.
    login_free_failures_per_address: int = Field(default=50, ge=1)
    # Requests that mail someone (registration, password reset, a new confirmation link): free ones
    # per email address and per client address, then a growing wait (30 s, doubling, at most 1 h).
    mail_requests_free_per_email: int = Field(default=3, ge=1)
    mail_requests_free_per_address: int = Field(default=20, ge=1)
    # The shortest answer of those pages (ms, the commit included): whatever the account, the same time.
    mail_request_min_ms: int = Field(default=400, ge=0, le=10_000)
    # Wrong share-link codes from one client address (over every link) before the same growing wait.
    share_code_free_failures_per_address: int = Field(default=20, ge=1)
    # Argon2id cost (RFC 9106 second recommended option by default). Lower only in tests.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=64 * 1024, ge=8 * 1024)
    # At most this many argon2id computations at once per process (memory: this times the memory
    # cost); a login that waits longer than argon2_wait_seconds for its turn answers 503.
    argon2_concurrency: int = Field(default=2, ge=1, le=64)
    argon2_wait_seconds: float = Field(default=10, gt=0, le=120)
    # At most this many more wait for their turn (each holds a worker thread and a database
    # connection while it waits); beyond, 503 at once.
    argon2_max_waiting: int = Field(default=8, ge=0, le=1000)
    # Document vault. The file limit must stay below clamd's StreamMaxLength (else nothing is scanned).
    max_file_mb: int = Field(default=50, ge=1, le=4096)
    # How far behind the body an upload's parts go to the store (they catch up while clamd scans).
    upload_store_lag_mb: int = Field(default=256, ge=0, le=4096)
    quota_mb: int = Field(default=500, ge=1)
    quota_documents: int = Field(default=200, ge=1)

    # GDPR: accounts unused this long are erased (after a notice 30 days before); audit log retention.
    retention_inactive_years: int = Field(default=3, ge=1, le=20)
    audit_retention_days: int = Field(default=365, ge=30)
    # Signed checkpoints of the audit log's head, written to the object store: after this many
    # entries, and at least this often while entries are written.
    audit_checkpoint_entries: int = Field(default=100, ge=1)
    audit_checkpoint_seconds: int = Field(default=300, ge=10, le=86400)

    # OpenID Connect provider.
    access_token_seconds: int = Field(default=600, ge=60, le=3600)
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    # Proxies whose X-Forwarded-For is trusted for the client address: comma-separated addresses or
    # networks (10.42.0.0/16: a Kubernetes ingress controller's pods change address).
    trusted_proxies: str = ""

    @field_validator("retention_schedule")
    @classmethod
    def _schedule_is_cron(cls, value: str) -> str:
        from croniter import croniter  # noqa: PLC0415  (only to validate)

        if not croniter.is_valid(value):
            raise ValueError(f"VAULT_RETENTION_SCHEDULE={value!r} is not a cron expression (e.g. '0 3 * * *')")
        return value

    @model_validator(mode="after")
    def _old_name_of_jobs(self) -> Settings:
        if self.mail_sender is not None and "jobs" not in self.model_fields_set:
            object.__setattr__(self, "jobs", self.mail_sender)  # frozen: set once, while validating
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",")):
            if not entry:
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"VAULT_TRUSTED_PROXIES: {entry!r} is not an IP address nor a network "
                                 "(e.g. 10.0.0.5 or 10.42.0.0/16)") from None
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return proxy_networks(self.trusted_proxies)

    # Prometheus metrics (vault.metrics): served by `vault serve` and `vault worker` on this port of
    # their own, never on the service's; 0 (the default, in every profile) serves none.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _metrics_port_is_a_port(cls, value: Any) -> int:
        text = str(value).strip()
        if not text.isdigit() or int(text) > 65535:
            raise ValueError(f"VAULT_METRICS_PORT must be a port number (1-65535), or 0 for no metrics, not {text!r}")
        return int(text)

    @field_validator("metrics_host")
    @classmethod
    def _metrics_host_is_an_address(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.:-]+", value.strip("[]")):
            raise ValueError(f"VAULT_METRICS_HOST must be an address to listen on (0.0.0.0, 127.0.0.1…), not {value!r}")
        return value.strip("[]")

    @field_validator("timezone")
    @classmethod
    def _timezone_is_known(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"VAULT_TIMEZONE: unknown time zone {value!r} (an IANA name, e.g. Europe/Paris)") from None
        return value

    def today(self) -> date:
        """Today's date in the city (not the server's local date)."""
        return datetime.now(ZoneInfo(self.timezone)).date()

    @field_validator("issuer")
    @classmethod
    def _issuer_is_a_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("VAULT_ISSUER must be an absolute http(s) URL, e.g. https://vault.example.fr")
        if parts.query or parts.fragment:
            raise ValueError("VAULT_ISSUER must not have a query or a fragment")
        return value.rstrip("/")

    # ---- derived values -------------------------------------------------------------------

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def https(self) -> bool:
        return self.issuer.startswith("https://")

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vault.sqlite3').resolve()}"

    @cached_property
    def effective_keyring_file(self) -> Path:
        return self.keyring_file or self.data_dir / "keyring.json"

    @property
    def on_postgresql(self) -> bool:
        return self.effective_database_url.startswith("postgresql")

    @property
    def keeps_files(self) -> bool:
        """Whether the service writes anything of its own under ``data_dir``: the filesystem store,
        the mail outbox (no SMTP), SQLite or a keyring generated there."""
        return (self.storage_backend == "fs" or not self.smtp_url or self.database_url is None
                or (self.key_provider == "local" and self.keyring_file is None))

    def make_data_dir_private(self) -> None:
        """The data folder, when anything is kept there, exists and only its owner can enter it
        (0700): made so whatever the umask. In development an older, looser one (0755) is tightened,
        and the log says so; production refuses it instead (``check``): an operator's folder is
        never changed."""
        if not self.keeps_files:
            return
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = self.data_dir.stat().st_mode & 0o777
        except OSError as exc:  # what is written there fails later, each with its own error
            logger.error("data folder cannot be made", extra={"path": str(self.data_dir), "error": type(exc).__name__})
            return
        if mode & 0o077 and not self.is_production:
            try:
                self.data_dir.chmod(mode & 0o700)
            except OSError as exc:  # another user's folder: said, not fatal in development
                logger.warning("data folder open to others, and not ours to change",
                               extra={"path": str(self.data_dir), "mode": f"{mode:04o}", "error": type(exc).__name__})
                return
            logger.warning("data folder made private", extra={"path": str(self.data_dir), "was": f"{mode:04o}"})

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    # ---- the production profile ------------------------------------------------------------

    def check(self) -> list[str]:
        """Validate the whole configuration; return warnings, raise ConfigError when it cannot run.

        In production every development default must be named explicitly: a variable left unset
        is refused, a development value set on purpose is accepted with a warning.
        """
        errors: list[str] = []
        warnings: list[str] = []
        explicit = self.model_fields_set

        if self.is_production:
            if "issuer" not in explicit or not self.https:
                errors.append("VAULT_ISSUER must be set to the public HTTPS address of the service")
            if "database_url" not in explicit:
                errors.append("VAULT_DATABASE_URL must be set (PostgreSQL); SQLite is a development default")
            if "storage_backend" not in explicit:
                errors.append("VAULT_STORAGE_BACKEND must be set (s3); the filesystem store is a development default")
            if "antivirus" not in explicit:
                errors.append("VAULT_ANTIVIRUS must be set (clamd); antivirus off is a development default")
            if self.key_provider == "local" and "keyring_file" not in explicit:
                errors.append(
                    "VAULT_KEYRING_FILE must name an existing keyring (or use VAULT_KEY_PROVIDER=aws-kms); "
                    "a generated keyring is a development default"
                )
            if self.key_provider == "local" and "keyring_file" in explicit and not self.effective_keyring_file.is_file():
                errors.append(f"VAULT_KEYRING_FILE={self.effective_keyring_file} does not exist")
            elif self.key_provider == "local" and "keyring_file" in explicit:
                path = self.effective_keyring_file
                mode = path.stat().st_mode & 0o777
                if mode & 0o077:
                    errors.append(f"VAULT_KEYRING_FILE={path} is open to group or others (mode {mode:04o}): "
                                  f"run chmod 600 {path} (readable by the service's user only)")
            if "data_dir" not in explicit and (self.storage_backend == "fs" or not self.smtp_url):
                errors.append("VAULT_DATA_DIR must be set when files are kept on disk (fs store or mail outbox)")
            elif self.keeps_files and self.data_dir.is_dir() and (mode := self.data_dir.stat().st_mode & 0o777) & 0o077:
                errors.append(f"VAULT_DATA_DIR={self.data_dir} is open to group or others (mode {mode:04o}): run "
                              f"chmod 700 {self.data_dir} (it holds mails with live links, or encrypted documents)")
            if self.database_url and self.database_url.startswith("sqlite"):
                warnings.append("production runs on SQLite, named explicitly: one replica only")
            if self.storage_backend == "fs":
                warnings.append("production stores documents on the local filesystem, named explicitly")
            if self.antivirus == "off":
                warnings.append("production runs WITHOUT antivirus, named explicitly")
            if not self.smtp_url:
                warnings.append("VAULT_SMTP_URL is not set: mail is written to the outbox folder, not sent")
            if self.on_postgresql and self.jobs != "worker":
                errors.append("VAULT_JOBS must be worker in production on PostgreSQL (and one or more `vault worker` "
                              "run the jobs): each web process would otherwise run every periodic job itself")

        if self.mail_sender is not None:
            warnings.append("VAULT_MAIL_SENDER is the old name of VAULT_JOBS: rename it")
        if self.storage_backend == "s3" and not self.s3_bucket:
            errors.append("VAULT_S3_BUCKET must be set with VAULT_STORAGE_BACKEND=s3")
        if self.antivirus == "clamd" and not self.clamd_address:
            errors.append("VAULT_CLAMD_ADDRESS must be set with VAULT_ANTIVIRUS=clamd (tcp://host:port or unix:///path)")
        if self.clamd_address and not self.clamd_address.startswith(("tcp://", "unix://")):
            errors.append("VAULT_CLAMD_ADDRESS must look like tcp://host:port or unix:///path")
        if self.key_provider == "aws-kms" and not self.kms_key_id:
            errors.append("VAULT_KMS_KEY_ID must be set with VAULT_KEY_PROVIDER=aws-kms")
        if self.smtp_url and urlsplit(self.smtp_url.get_secret_value()).scheme not in ("smtp", "smtps", "smtp+starttls"):
            errors.append("VAULT_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://")
        for name in ("franceconnect", "proconnect"):
            values = [getattr(self, f"{name}_{part}") for part in ("issuer", "client_id", "client_secret")]
            upper = f"VAULT_{name.upper()}"
            if any(values) and not all(values):
                errors.append(f"{upper}_ISSUER, {upper}_CLIENT_ID and {upper}_CLIENT_SECRET go together: set all three or none")
            issuer = values[0]
            if issuer and urlsplit(issuer).scheme not in ("https", "http"):
                errors.append(f"{upper}_ISSUER must be an https:// URL")
            elif issuer and self.is_production and urlsplit(issuer).scheme != "https":
                errors.append(f"{upper}_ISSUER must use https in production")

        if not self.is_production:
            if self.antivirus == "off":
                warnings.append("antivirus is OFF (development): documents are not scanned")
            if self.storage_backend == "fs":
                warnings.append("documents are stored on the local filesystem (development only)")
        if errors:
            raise ConfigError("; ".join(errors))
        return warnings


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (and explicit overrides, used by tests and the CLI): any field, its value
    as the environment would give it or already typed; pydantic validates it."""
    return Settings(**overrides)
