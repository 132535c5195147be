"""Settings: every knob in one place, read from `DOCUHOOKS_*` variables or a TOML file.

Precedence: explicit keyword arguments > environment variables > the TOML file named by
`DOCUHOOKS_CONFIG` (or `--config`) > defaults. `docs/configuration.md` lists every setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from docuhooks.core.database_url import connect_args, same_server
from docuhooks.core.networks import InvalidNetworkSetting, parse_networks
from docuhooks.core.retry import RetrySchedule

ENV_PREFIX = "DOCUHOOKS_"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("docuhooks-data")
    #: Empty means an SQLite file in `data_dir`.
    database_url: str = ""
    # --- PostgreSQL behind a connection pooler (see docs/operations.md, "PgBouncer") -----
    #: What `database_url` goes through: `none` (the server itself, or a pooler in session
    #: mode) or `transaction` (PgBouncer's `pool_mode = transaction`): then no statement is
    #: kept prepared across transactions, and nothing `LISTEN`s through the pooler.
    database_pooler: str = "none"
    #: A `postgresql://` URL that reaches the server directly, for the `LISTEN` connections
    #: (workers' wake-ups, token revocations); empty means `database_direct_url`, else
    #: `database_url` unless `database_pooler = transaction` (then workers poll).
    database_listen_url: str = field(default="", repr=False)
    #: A `postgresql://` URL that reaches the server directly, for migrations; empty means
    #: `database_listen_url`, else migrations go through `database_url`.
    database_direct_url: str = field(default="", repr=False)
    # --- end of connection pooler ---
    #: Key for encrypting secrets at rest; empty means one generated into `data_dir`.
    secret_key: str = ""
    #: Comma-separated CIDRs the outbound address policy lets through.
    allowed_networks: str = ""
    #: Development mode: the address policy also lets loopback through.
    dev_mode: bool = False
    base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    #: JSON log lines (True), readable ones (False), or None (`auto`): JSON unless standard
    #: error is a terminal.
    log_json: bool | None = None
    #: Largest JSON request body the API accepts.
    max_json_body_bytes: int = 1024 * 1024
    #: Largest upload (templates, documents) the API accepts.
    max_upload_bytes: int = 60 * 1024 * 1024
    #: Outbound calls (notifications, interview and post-processing hooks): keep-alive
    #: connections to one receiver's origin at most, per process.
    connections_per_host: int = 20
    #: Delivery worker.
    worker_enabled: bool = True
    worker_concurrency: int = 64
    worker_batch_size: int = 100
    worker_lease_seconds: int = 60
    worker_poll_seconds: float = 2.0
    retry_schedule: str = "0,10s,1m,5m,30m,2h,6h,12h,24h"
    attempt_retention_days: int = 30
    #: Finished (succeeded or failed) deliveries are pruned this many days after they
    #: finished, with their attempts, and then events left without deliveries, and finished
    #: recovery jobs as long after they finished; 0 means `attempt_retention_days`. Pending
    #: deliveries and queued or running recoveries are kept, however old.
    delivery_retention_days: int = 0
    suspend_after_failures: int = 20
    suspend_after_hours: float = 24.0
    probe_interval_seconds: int = 600
    #: Operational events: how long before a rotated secret's grace period ends its
    #: `WebhookSecretGraceEnding` goes out.
    secret_grace_notice_hours: float = 24.0
    #: Isolation: a destination's circuit breaker opens after this many consecutive
    #: failures, and then lets one probe call through per interval.
    breaker_failure_threshold: int = 5
    breaker_probe_seconds: float = 30.0
    #: /metrics: per-webhook series (in flight, due backlog) as well as the totals.
    metrics_per_webhook: bool = False
    # --- Isolation: caps on calls in flight, installation-wide (see docs/operations.md) ---
    #: Calls in flight to one destination (scheme, host and port) at most, across every
    #: worker; 0 means `connections_per_host`, so a worker's senders never wait for a pooled
    #: connection (a wait its timeout would record as a `timeout`).
    destination_max_in_flight: int = 0
    #: Calls in flight for one site's webhooks at most, across every worker and whatever
    #: its number of webhooks or destinations; 0 means half of `worker_concurrency`.
    site_max_in_flight: int = 0
    # --- end of isolation caps ---
    #: Interview webhooks: the whole step's budget.
    interview_budget_seconds: float = 8.0
    #: Post-processing callback deadline.
    post_processing_deadline_seconds: int = 600
    # --- Outbound connections: connect timeout per address, egress proxy -------------------
    #: Outbound calls: how long one resolved address may take to accept a connection before
    #: it counts as failed (the next address is tried alongside after 250 ms regardless);
    #: the call's own timeout still bounds the whole call.
    connect_timeout_seconds: float = 5.0
    #: Outbound calls go through this HTTP forward proxy (``http://[user:password@]host:port``)
    #: for http and https webhooks alike; empty means the ``HTTPS_PROXY``/``HTTP_PROXY``
    #: environment variables (and ``NO_PROXY``) decide, as for curl. Kept out of ``repr``:
    #: it may carry the proxy's password.
    outbound_proxy: str = field(default="", repr=False)
    #: With ``outbound_proxy``: the hosts that bypass it, comma-separated, as ``NO_PROXY``.
    outbound_no_proxy: str = ""
    # --- end outbound connections -------------------------------------------------------------

    # --- Interactive calls per site ----------------------------------------------------------
    #: Interview hooks, post-processing calls and test sends of one site in flight at once, per
    #: process; a call past it waits for one of its site's calls to finish, within its own
    #: timeout. A quarter of the interactive pool's 200 connections: one site calling receivers
    #: that never answer leaves the other sites most of the pool.
    interactive_calls_per_site: int = 50
    # --- end interactive calls per site ---

    # --- SQLite durability ----------------------------------------------------------------
    #: `PRAGMA synchronous` on every SQLite connection: `normal` (in WAL mode a commit
    #: survives the process crashing, but the last commits may be lost if the machine loses
    #: power) or `full` (an fsync per commit: survives power loss, costs throughput).
    #: PostgreSQL ignores it.
    sqlite_synchronous: str = "normal"
    # --- end SQLite durability ---

    # --- Answer sets: what one answer set may hold (see `docuhooks.answers.limits`). ---
    # Sent to an interview or a quick document, or answered by an interview receiver; an
    # interview's answers after an overlay are held to the same limits.
    #: Largest answer-set document (JSON or XML; 413 beyond), and an interview's answers
    #: after an overlay; also the largest reply read from an interview receiver.
    max_answer_set_bytes: int = 5 * 1024 * 1024
    #: Largest single value (a text, or one selection's options together), as UTF-8 (413).
    max_answer_value_bytes: int = 64 * 1024
    #: Most answers in one answer set (422).
    max_answers: int = 5_000
    #: Most values in one answer, counting every repeat iteration at every level (422).
    max_answer_values_per_answer: int = 10_000
    #: Most values in one answer set, counted the same way (422).
    max_answer_values: int = 100_000
    #: Threads that read large answer sets off the event loop, per process.
    answer_parse_threads: int = 2
    # --- end of answer sets ---

    # --- Render isolation and DOCX limits -------------------------------------------------
    # Templates are inspected and rendered in worker processes, each job bounded in time,
    # memory and output; every DOCX (template, uploaded or returned document) is checked
    # against the docx_* limits before anything expands it. See docs/operations.md.
    #: Worker processes that inspect and render templates.
    render_workers: int = 2
    #: Wall-clock time one render or inspection may take before its worker is killed.
    render_time_limit_seconds: float = 20.0
    #: Address space (RLIMIT_AS) of each render worker.
    render_memory_limit_bytes: int = 1024 * 1024 * 1024
    #: Most a render may produce: the text its template outputs, and the document saved.
    render_output_limit_bytes: int = 64 * 1024 * 1024
    #: Most entries a DOCX archive may hold.
    docx_max_entries: int = 5000
    #: Largest size one DOCX entry may expand to.
    docx_max_entry_bytes: int = 32 * 1024 * 1024
    #: Largest size all of a DOCX's entries may expand to together.
    docx_max_total_bytes: int = 256 * 1024 * 1024
    #: Most an entry of over 1 MiB may expand, as a multiple of its compressed size.
    docx_max_compression_ratio: float = 100.0

    # --- Render fairness between sites ----------------------------------------------------
    # One site's renders (looping templates, post-processing replies judged in the pool)
    # must not keep every other site's waiting: see docs/operations.md.
    #: Most render workers one site may hold at once; 0: all but one (at least one).
    render_workers_per_site: int = 0
    # --- end of render fairness ---

    # --- What one site may keep and ask for (see docs/operations.md) -----------------------
    # Sites share one database and one disk: each is held to its own share of them. 0 turns
    # a limit off (an installation of one site, or of trusted ones).
    #: Bytes of documents, templates and answer sets one site may store, together (10 GiB).
    site_storage_quota_bytes: int = 10 * 1024 * 1024 * 1024
    #: Documents and templates one site may store, together.
    site_storage_quota_files: int = 100_000
    #: Webhooks one site may have; each adds calls to every event it matches.
    site_max_webhooks: int = 100
    #: Test sends (`POST /webhooks/{id}/test`, the web UI's Send test) of one site within
    #: any minute, across every process.
    webhook_tests_per_minute: int = 20
    #: Redeliveries of real deliveries (`POST /deliveries/{id}/redeliver`, the web UI's
    #: Redeliver event) by one site within any minute, across every process.
    redeliveries_per_minute: int = 60
    # --- end of what one site may keep ---

    def __post_init__(self) -> None:
        # A value that cannot work stops the process at start, named, rather than failing
        # later inside a request, a delivery or a library's traceback.
        _check(self)

    @property
    def kept_delivery_days(self) -> int:
        """How long finished deliveries and their events are kept (`delivery_retention_days`,
        else `attempt_retention_days`)."""
        return self.delivery_retention_days or self.attempt_retention_days

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'docuhooks.db').resolve()}"

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {}
        config_file = config_file or os.environ.get(ENV_PREFIX + "CONFIG")
        if config_file:
            values.update(_read_toml(Path(config_file)))
        for f in fields(cls):
            env = os.environ.get(ENV_PREFIX + f.name.upper())
            if env is not None:
                values[f.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Settings:
        known = {f.name: f for f in fields(cls)}
        converted: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in known:
                raise SettingsError(f"unknown setting {name!r}")
            converted[name] = _convert(name, known[name], raw)
        return cls(**converted)


#: `DOCUHOOKS_*` variables that are not settings: read by `--config`, `docuhooks listen`,
#: the receiver examples (docs/receiving.md), and the test suite and benchmarks.
OTHER_VARIABLES = frozenset(
    ENV_PREFIX + name
    for name in (
        "CONFIG",
        "API_TOKEN",
        "WEBHOOK_SECRETS",
        "HMAC_SECRETS",
        "WHSEC_SECRETS",
        "ACCESS_TOKENS",
        "WEBHOOK_IDS",
        "WEBHOOK_AUTH_METHOD",
        "ISSUER",
        "REQUIRE_POSTGRES",
        "REQUIRE_BROWSER",
        "REQUIRE_NODE",
        "TEST_POSTGRES_URL",
        "BENCH_POSTGRES_URL",
        "BENCH_REDIS_URL",
    )
)


def unknown_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """Each `DOCUHOOKS_*` variable in `environ` that no setting reads (a misspelt setting is
    otherwise silently ignored), with the setting's variable it is closest to, if any."""
    names = [f.name.upper() for f in fields(Settings)]
    known = {*(ENV_PREFIX + name for name in names), *OTHER_VARIABLES}
    found: dict[str, str | None] = {}
    for variable in sorted(environ):
        if variable.startswith(ENV_PREFIX) and variable not in known:
            # Compared without the prefix they share, which would make every name "close".
            close = difflib.get_close_matches(variable.removeprefix(ENV_PREFIX), names, 1, 0.7)
            found[variable] = ENV_PREFIX + close[0] if close else None
    return found


#: Log levels `log_level` may name (uvicorn's and the standard library's).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: What `database_pooler` may say (see `store.database`).
DATABASE_POOLERS = ("none", "transaction")
#: What `sqlite_synchronous` may say (SQLite's `PRAGMA synchronous`, see `store.sqlite_inline`).
SQLITE_SYNCHRONOUS = ("normal", "full")
#: Settings that name one of a few choices.
_CHOICES = {"database_pooler": DATABASE_POOLERS, "sqlite_synchronous": SQLITE_SYNCHRONOUS}

#: Numeric settings that cannot work below 1 (counts, sizes, whole seconds).
_AT_LEAST_ONE = (
    "max_json_body_bytes",
    "max_upload_bytes",
    "connections_per_host",
    "interactive_calls_per_site",
    "worker_concurrency",
    "worker_batch_size",
    "worker_lease_seconds",
    "suspend_after_failures",
    "probe_interval_seconds",
    "breaker_failure_threshold",
    "post_processing_deadline_seconds",
    # A retention of no days would prune what was just written.
    "attempt_retention_days",
    "max_answer_set_bytes",
    "max_answer_value_bytes",
    "max_answers",
    "max_answer_values_per_answer",
    "max_answer_values",
    "answer_parse_threads",
    "render_workers",
    "render_output_limit_bytes",
    "docx_max_entries",
    "docx_max_entry_bytes",
    "docx_max_total_bytes",
)
#: Durations and ratios that must be more than 0.
_POSITIVE = (
    "worker_poll_seconds",
    "connect_timeout_seconds",
    "breaker_probe_seconds",
    "interview_budget_seconds",
    "render_time_limit_seconds",
    "docx_max_compression_ratio",
)
#: Settings where 0 has a meaning (none, or a default) but a negative number has none.
_NOT_NEGATIVE = (
    "delivery_retention_days",
    "destination_max_in_flight",
    "site_max_in_flight",
    "suspend_after_hours",
    "secret_grace_notice_hours",
    "render_memory_limit_bytes",
    "render_workers_per_site",
    "site_storage_quota_bytes",
    "site_storage_quota_files",
    "site_max_webhooks",
    "webhook_tests_per_minute",
    "redeliveries_per_minute",
)
#: Lower case only, as SQLAlchemy finds its dialects by name: `SQLITE://` would pass a check
#: that ignored case and then not be recognised as SQLite.
_DATABASE_SCHEME = re.compile(r"(sqlite|postgresql|postgres)(\+\w+)?://")
_POSTGRES_SCHEME = re.compile(r"(postgresql|postgres)(\+\w+)?://")
#: The URLs that reach PostgreSQL directly, beside `database_url`.
_DIRECT_URLS = ("database_listen_url", "database_direct_url")


def _check(settings: Settings) -> None:
    """Raise SettingsError naming the first setting whose value cannot be used."""

    def refuse(name: str, problem: str) -> SettingsError:
        return SettingsError(f"setting {ENV_PREFIX}{name.upper()}: {problem}")

    if not 1 <= settings.port <= 65535:
        raise refuse("port", f"a port is 1 to 65535, not {settings.port}")
    if settings.log_level.lower() not in LOG_LEVELS:
        raise refuse(
            "log_level", f"expected one of {', '.join(LOG_LEVELS)}, got {settings.log_level!r}"
        )
    # As `--log-level` is spelt: uvicorn knows the levels by their lower-case names only.
    object.__setattr__(settings, "log_level", settings.log_level.lower())
    if settings.secret_key and len(settings.secret_key) < 16:
        raise refuse(
            "secret_key",
            f"must be at least 16 characters, not {len(settings.secret_key)}: set a long "
            "random string, or leave it empty for the key generated into the data directory",
        )
    url = settings.database_url
    if url and not _DATABASE_SCHEME.match(url):
        scheme = url.partition("://")[0] if "://" in url else url
        raise refuse(
            "database_url",
            f"unsupported database {scheme!r}: use postgresql://user@host/database, "
            "sqlite:///path, or leave it empty for SQLite in the data directory",
        )
    for name, choices in _CHOICES.items():
        if getattr(settings, name) not in choices:
            raise refuse(
                name, f"expected one of {', '.join(choices)}, got {getattr(settings, name)!r}"
            )
    _check_database_urls(settings, refuse)
    _check_numbers(settings, refuse)
    # Parsed once here by the code that reads them where they are used (each outbound call,
    # each delivery's retry), so an unusable entry stops the start instead of every call.
    try:
        parse_networks(settings.allowed_networks)
    except InvalidNetworkSetting as exc:
        raise refuse("allowed_networks", str(exc).removeprefix("allowed networks, ")) from None
    try:
        RetrySchedule.from_setting(settings.retry_schedule)
    except ValueError as exc:
        raise refuse("retry_schedule", str(exc)) from None


def _check_numbers(settings: Settings, refuse: Callable[[str, str], SettingsError]) -> None:
    for name in _AT_LEAST_ONE:
        if getattr(settings, name) < 1:
            raise refuse(name, f"must be at least 1, not {getattr(settings, name)}")
    for name in _POSITIVE:
        if getattr(settings, name) <= 0:
            raise refuse(name, f"must be more than 0, not {getattr(settings, name)}")
    for name in _NOT_NEGATIVE:
        if getattr(settings, name) < 0:
            raise refuse(name, f"must be 0 or more, not {getattr(settings, name)}")


def _check_database_urls(settings: Settings, refuse: Callable[[str, str], SettingsError]) -> None:
    """Each database URL's query parameters as the driver will be given them, and the direct
    URLs beside a pooler (see `core.database_url`)."""
    for name in _DIRECT_URLS:
        other = getattr(settings, name)
        if other and not _POSTGRES_SCHEME.match(other):
            raise refuse(name, "must be a postgresql:// URL")
    for name in ("database_url", *_DIRECT_URLS):
        if getattr(settings, name):
            try:
                connect_args(getattr(settings, name))
            except ValueError as exc:
                raise refuse(name, str(exc)) from None
    if settings.database_pooler == "transaction":
        for name in _DIRECT_URLS:
            other = getattr(settings, name)
            if other and same_server(other, settings.resolved_database_url):
                # A LISTEN through the pooler hears nothing, and a migration through it may
                # be split across server connections: the pooler's own address is a mistake.
                raise refuse(
                    name,
                    "is database_url's address, which database_pooler = transaction says is "
                    "the pooler; give PostgreSQL's own address (or leave it empty)",
                )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise SettingsError(f"configuration file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"configuration file {path} is not valid TOML: {exc}") from exc
    section = data.get("docuhooks", data)
    return {str(k).replace("-", "_"): v for k, v in section.items()}


def _convert(name: str, f: dataclasses.Field[Any], raw: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "bool | None":
            if raw is None or str(raw).strip().lower() in ("", "auto"):
                return None
            kind = "bool"
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            expected = "true, false or auto" if f.type == "bool | None" else "true or false"
            raise ValueError(f"expected {expected}, got {raw!r}")
        if kind == "int":
            return _whole_number(raw)
        if kind == "float":
            return _number(raw)
        if kind == "Path":
            return Path(raw)
        return str(raw)
    except ValueError as exc:
        raise SettingsError(f"setting {ENV_PREFIX}{name.upper()}: {exc}") from exc


def _whole_number(raw: Any) -> int:
    if isinstance(raw, float) and raw.is_integer():  # `64.0` in a TOML file
        return int(raw)
    if isinstance(raw, bool) or not re.fullmatch(r"\s*[-+]?\d+\s*", str(raw)):
        raise ValueError(f"expected a whole number, got {raw!r}")
    return int(raw)


def _number(raw: Any) -> float:
    try:
        number = math.nan if isinstance(raw, bool) else float(raw)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"expected a number, got {raw!r}")
    return number


def field_defaults() -> dict[str, Any]:
    """Every setting with its default, for `docuhooks config` and the docs."""
    out: dict[str, Any] = {}
    for f in fields(Settings):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


_ = field  # re-exported for subclasses that need factories
