"""Settings, layered once: built-in defaults → digest.toml → DIGEST_* environment → flags."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import SettingsError
from digest.urls import is_url

CONFIG_NAME = "digest.toml"
BACKENDS = ("outbox", "smtp", "sendgrid")
SMTP_SECURITY = ("starttls", "ssl", "none")
UNDATED = ("exclude", "include")  # [selection] undated
SECRET_FIELDS = frozenset({"smtp_password", "sendgrid_api_key", "secret"})

# digest.toml section and key of each setting; the environment name is DIGEST_<FIELD>.
TOML_PLACES: dict[str, tuple[str, str]] = {
    "database_url": ("database", "url"),
    "name": ("newsletter", "name"),
    "from_email": ("newsletter", "from_email"),
    "from_name": ("newsletter", "from_name"),
    "reply_to": ("newsletter", "reply_to"),
    "postal_address": ("newsletter", "postal_address"),
    "base_url": ("newsletter", "base_url"),
    "timezone": ("newsletter", "timezone"),
    "language": ("newsletter", "language"),
    "secret": ("newsletter", "secret"),
    "templates": ("newsletter", "templates"),
    "note": ("newsletter", "note"),
    "sections": ("newsletter", "sections"),
    "subject": ("newsletter", "subject"),
    "preheader": ("newsletter", "preheader"),
    "accent_color": ("brand", "accent_color"),
    "logo_url": ("brand", "logo_url"),
    "font": ("brand", "font"),
    "images": ("brand", "images"),
    "sources": ("sources", "paths"),
    "source_mapping": ("sources", "mapping"),
    "allow_private_addresses": ("sources", "allow_private_addresses"),
    "fetch_timeout": ("sources", "fetch_timeout"),
    "ingest_timeout": ("sources", "ingest_timeout"),
    "max_feeds_per_list": ("sources", "max_feeds_per_list"),
    "source_names": ("sources", "names"),
    "top": ("selection", "top"),
    "summary_sentences": ("selection", "summary_sentences"),
    "summary_chars": ("selection", "summary_chars"),
    "cluster_threshold": ("selection", "cluster_threshold"),
    "source_weights": ("selection", "source_weights"),
    "max_per_source": ("selection", "max_per_source"),
    "max_per_section": ("selection", "max_per_section"),
    "min_stories": ("selection", "min_stories"),
    "undated": ("selection", "undated"),
    "learn_from_clicks": ("selection", "learn_from_clicks"),
    "learned_weight_bounds": ("selection", "learned_weight_bounds"),
    "personalize": ("selection", "personalize"),
    "topics": ("topics", "choices"),
    "backend": ("delivery", "backend"),
    "outbox": ("delivery", "outbox"),
    "list": ("delivery", "list"),
    "batch_size": ("delivery", "batch_size"),
    "workers": ("delivery", "workers"),
    "rate": ("delivery", "rate"),
    "max_requests_per_second": ("delivery", "max_requests_per_second"),
    "retries": ("delivery", "retries"),
    "backoff": ("delivery", "backoff"),
    "lease_seconds": ("delivery", "lease_seconds"),
    "smtp_host": ("smtp", "host"),
    "smtp_port": ("smtp", "port"),
    "smtp_security": ("smtp", "security"),
    "smtp_username": ("smtp", "username"),
    "smtp_password": ("smtp", "password"),
    "smtp_timeout": ("smtp", "timeout"),
    "smtp_verify": ("smtp", "verify"),
    "sendgrid_host": ("sendgrid", "host"),
    "sendgrid_timeout": ("sendgrid", "timeout"),
    "sendgrid_asm_group_id": ("sendgrid", "asm_group_id"),
    "sendgrid_sandbox": ("sendgrid", "sandbox"),
    "sendgrid_webhook_public_key": ("sendgrid", "webhook_public_key"),
    "schedule_draft": ("schedule", "draft"),
    "schedule_send": ("schedule", "send"),
    "schedule_approval": ("schedule", "approval"),
    "schedule_editors": ("schedule", "editors"),
    "allowed_origins": ("web", "allowed_origins"),
    "consent_text": ("web", "consent_text"),
    "join_per_ip": ("web", "join_per_ip"),
    "track_clicks": ("tracking", "clicks"),
    "track_per_subscriber": ("tracking", "per_subscriber"),
}
# Names outside the DIGEST_ prefix that the ecosystem already uses.
EXTRA_ENV = {"sendgrid_api_key": "SENDGRID_API_KEY"}


@dataclass(frozen=True)
class ListSettings:
    """One list as its readers see it (`[lists.NAME]`); private unless declared public."""

    public: bool = False  # offered to every subscriber on the preferences page
    title: str = ""  # shown instead of the list's name
    description: str = ""


LIST_KEYS = {"public": bool, "title": str, "description": str}
MAX_LIST_NAME = 200  # the tables' limit


@dataclass(frozen=True)
class Settings:
    """Every setting digest reads, validated; paths are absolute."""

    base_dir: Path = field(default_factory=Path.cwd)
    config_path: Path | None = None
    database_url: str = field(default="", repr=False)  # may hold a password
    name: str = "The Weekly Digest"
    from_email: str = "digest@example.com"
    from_name: str = ""
    reply_to: str = ""
    postal_address: str = ""
    base_url: str = ""
    timezone: str = "UTC"
    language: str = "en"
    secret: str = field(default="", repr=False)
    templates: Path | None = None
    note: str = ""  # the editor's note, Markdown (or digest preview/send --note FILE.md)
    sections: tuple[str, ...] = ()  # topics, in order; stories grouped by section
    subject: str = ""  # a Jinja template of the subject line; empty: "NAME #N: lead headline"
    preheader: str = ""  # a Jinja template of the inbox preview text; empty: the next headlines
    accent_color: str = "#2f5bea"  # links, rules and buttons
    logo_url: str = ""  # an https:// image shown above the name
    font: str = ""  # a CSS font-family list; empty: the system font stack
    images: str = "lead"  # which stories show their image: "lead", "all" or "none"
    sources: tuple[str, ...] = ()
    source_mapping: dict[str, str] = field(default_factory=dict)  # article field → export field
    allow_private_addresses: bool = False  # fetch from loopback, private, link-local, … hosts
    fetch_timeout: float = 20.0  # seconds for one URL's whole download, redirects included
    ingest_timeout: float = 900.0  # seconds for one whole ingest run
    max_feeds_per_list: int = 500  # feeds read from one OPML list (nested lists included)
    source_names: dict[str, str] = field(default_factory=dict)  # domain or feed URL → name
    top: int = 10
    summary_sentences: int = 2
    summary_chars: int = 320
    cluster_threshold: float = 0.42  # TF-IDF cosine at which two articles are one story
    source_weights: dict[str, float] = field(default_factory=dict)  # source name → weight
    max_per_source: int = 0  # stories from one source per issue; 0 = no cap
    max_per_section: int = 0  # stories from one section or topic per issue; 0 = no cap
    min_stories: int = 1  # digest send refuses a shorter lineup unless --force
    undated: str = "exclude"  # articles without a date: "exclude" (unless pinned) or "include"
    learn_from_clicks: bool = False  # past issues' clicks adjust source_weight (digest.learning)
    learned_weight_bounds: tuple[float, float] = (0.5, 2.0)  # what learning may multiply it by
    # [selection] personalize: each subscriber's own lineup from the topics they chose
    personalize: bool = False
    # [topics] choices: the sections and sources (display names) readers may choose
    topics: tuple[str, ...] = ()
    backend: str = "outbox"
    outbox: Path = Path("outbox")
    list: str = "main"
    batch_size: int = 1000
    workers: int = 8  # requests (SendGrid) or connections (SMTP) in flight at once
    rate: float = 0.0  # messages per second across all workers; 0 = no limit
    max_requests_per_second: float = 0.0  # provider requests per second, all workers; 0 = none
    retries: int = 5  # attempts per batch for answers that say "not taken, try again"
    backoff: float = 1.0  # seconds before the first retry; doubles each time, with jitter
    lease_seconds: float = 60.0  # a send's lease lapses this long after its last heartbeat
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_timeout: float = 30.0
    smtp_verify: bool = True
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_timeout: float = 30.0
    sendgrid_asm_group_id: int = 0  # SendGrid unsubscribe group; 0 = none
    sendgrid_sandbox: bool = False  # mail_settings.sandbox_mode: validate, deliver nothing
    sendgrid_api_key: str = field(default="", repr=False)
    sendgrid_webhook_public_key: str = ""  # verifies the Event Webhook (base64 DER)
    lists: dict[str, ListSettings] = field(default_factory=dict)  # [lists.NAME]
    # [schedule]: when the clock drafts and sends (cron or "fri 16:00", in `timezone`)
    schedule_draft: str = ""
    schedule_send: str = ""
    schedule_approval: str = "required"  # "required": an editor approves; "auto": it goes out
    schedule_editors: tuple[str, ...] = ()  # who gets the review copy

    @property
    def scheduled(self) -> bool:
        """Whether [schedule] sets a clock (draft and send times)."""
        return bool(self.schedule_draft or self.schedule_send)

    # Sites whose pages may POST /api/subscribe from a browser (CORS), e.g. https://example.com
    allowed_origins: tuple[str, ...] = ()
    # What a reader agrees to when joining ({lists}: the titles of the lists chosen).
    consent_text: str = (
        "Send me {lists} by email. I can unsubscribe at any time with the link in every email."
    )
    join_per_ip: int = 20  # requests to join per client IP and hour (in memory, per process)
    track_clicks: bool = False  # story links go through BASE_URL/c/TOKEN (needs base_url)
    track_per_subscriber: bool = False  # and carry who clicked (signed); else nobody's id

    @property
    def public_lists(self) -> tuple[str, ...]:
        """The lists any subscriber may join from the preferences page."""
        return tuple(sorted(name for name, found in self.lists.items() if found.public))

    def list_title(self, name: str) -> str:
        """What readers see for a list: its title, else its name."""
        found = self.lists.get(name)
        return found.title if found is not None and found.title else name

    @property
    def tz(self) -> ZoneInfo:
        """The newsletter's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def sender_name(self) -> str:
        """The display name in From:, the newsletter's name unless set."""
        return self.from_name or self.name

    def resolve(self, value: str | Path) -> Path:
        """A path from the settings, relative to the config's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path


def find_config(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: --config, then DIGEST_CONFIG, then ./digest.toml if present."""
    chosen = explicit or environ.get("DIGEST_CONFIG")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise SettingsError(
                f"config file {path} does not exist",
                "pass an existing file to --config (or DIGEST_CONFIG), or run 'digest init' first",
            )
        return path.resolve()
    default = Path.cwd() / CONFIG_NAME
    return default.resolve() if default.is_file() else None


def read_settings(
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings once: defaults → digest.toml → DIGEST_* environment → overrides."""
    environ = os.environ if environ is None else environ
    path = find_config(config, environ)
    raw: dict[str, tuple[Any, str]] = {}  # field → (value, where it came from)
    if path is not None:
        for name, (value, where) in _read_toml(path).items():
            raw[name] = (value, where)
    for name in TOML_PLACES:
        env_name = f"DIGEST_{name.upper()}"
        if env_name in environ:
            raw[name] = (environ[env_name], f"environment variable {env_name}")
    for name, env_name in EXTRA_ENV.items():
        if environ.get(env_name):
            raw[name] = (environ[env_name], f"environment variable {env_name}")
    for name, value in (overrides or {}).items():
        if value is not None:
            raw[name] = (value, f"--{name.replace('_', '-')}")
    base_dir = path.parent if path is not None else Path.cwd()
    settings = Settings(base_dir=base_dir, config_path=path)
    values = {name: _coerce(settings, name, value, where) for name, (value, where) in raw.items()}
    settings = replace(settings, **values)
    if not settings.database_url:
        settings = replace(settings, database_url=f"sqlite:///{base_dir / 'digest.db'}")
    _validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, tuple[Any, str]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{path}: {e}", "fix the TOML syntax at that line") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{path}: cannot read: {e}", "check the file's permissions") from e
    known = {place: name for name, place in TOML_PLACES.items()}
    found: dict[str, tuple[Any, str]] = {}
    for section, table in data.items():
        if section == "lists" and isinstance(table, dict):  # [lists.NAME] tables
            found["lists"] = (table, f"{path} [lists]")
            continue
        if not isinstance(table, dict):
            raise SettingsError(
                f"{path}: '{section}' must be a [section]",
                f"known sections: {', '.join(sorted({s for s, _ in known}))}",
            )
        for key, value in table.items():
            name = known.get((section, key))
            if name is None:
                keys = sorted(k for s, k in known if s == section)
                hint = (
                    f"known keys in [{section}]: {', '.join(keys)}"
                    if keys
                    else (f"known sections: {', '.join(sorted({s for s, _ in known}))}")
                )
                raise SettingsError(f"{path}: unknown setting [{section}] {key}", hint)
            found[name] = (value, f"{path} [{section}] {key}")
    return found


def _coerce(defaults: Settings, name: str, value: Any, where: str) -> Any:
    kind = str({f.name: f.type for f in fields(Settings)}[name])
    try:
        if name == "source_names":
            return _names(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "dict[str, float]":
            return _weights(value)
        if kind == "tuple[float, float]":
            return _bounds(value)
        if kind == "dict[str, str]":
            return _field_map(value, where)
        if kind == "dict[str, ListSettings]":
            return _lists(value, where)
        if kind in ("Path", "Path | None"):
            return defaults.resolve(str(value)) if value != "" else None
        if kind == "tuple[str, ...]":
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError) as e:
        expected = {
            "tuple[str, ...]": "a list of strings",
            "Path | None": "a path",
            "dict[str, float]": "a table of names and numbers (NAME = 1.5, or NAME=1.5,… in env)",
            "tuple[float, float]": "two numbers, lowest and highest: [0.5, 2.0] (0.5,2.0 in env)",
            "dict[str, str]": 'a table of field names (title = "headline", or title=headline,…)',
        }.get(kind, kind)
        if name == "source_names":
            expected = 'a table of domains or feed URLs and names ("example.com" = "Example")'

        # A secret (or a URL that may hold a password) is never echoed, only its type.
        shown = (
            f"a {type(value).__name__}"
            if name in SECRET_FIELDS or name == "database_url"
            else repr(value)
        )
        raise SettingsError(
            f"{where}: {name} must be {expected}, got {shown}",
            f"set {where.split(' [')[0]} to a valid {expected}",
        ) from e


# The article fields a CMS export's columns can be mapped to ([sources.mapping]).
MAPPING_FIELDS = (
    "title",
    "text",
    "url",
    "published",
    "summary",
    "author",
    "section",
    "source",
    "image",
)


def _field_map(value: Any, where: str) -> dict[str, str]:
    """[sources.mapping]: article field → the export's field name (a TOML table, or
    "title=headline, text=body" from the environment)."""
    value = _string_table(value)
    for field_name in value:
        if field_name not in MAPPING_FIELDS:
            raise SettingsError(
                f"{where}: {field_name!r} is not an article field",
                f"map any of: {', '.join(MAPPING_FIELDS)}",
            )
    return {str(k): str(v) for k, v in value.items()}


def _lists(value: Any, where: str) -> dict[str, ListSettings]:
    """[lists.NAME] tables: public = true|false, title and description (text)."""
    base = where.removesuffix(" [lists]")
    if not isinstance(value, dict):
        raise ValueError(value)
    found = {}
    for name, table in value.items():
        place = f"{base} [lists.{name}]"
        if not isinstance(table, dict):
            raise SettingsError(
                f"{place} must be a table",
                f'write it as [lists.{name}] with public = true, title = "…", description = "…"',
            )
        if not name.strip() or len(name) > MAX_LIST_NAME:
            raise SettingsError(
                f"{place}: a list name must be 1 to {MAX_LIST_NAME} characters",
                "rename the list in digest.toml and in your subscriber files",
            )
        for key, item in table.items():
            kind = LIST_KEYS.get(key)
            if kind is None:
                raise SettingsError(
                    f"{place}: unknown setting {key}", f"known keys: {', '.join(LIST_KEYS)}"
                )
            if not isinstance(item, kind) or (isinstance(item, str) and len(item) > 1000):
                expected = "true or false" if kind is bool else "a text of at most 1000 characters"
                raise SettingsError(
                    f"{place}: {key} must be {expected}, got {item!r}",
                    f"set {key} in [lists.{name}] to {expected}",
                )
        found[str(name)] = ListSettings(
            public=bool(table.get("public", False)),
            title=str(table.get("title", "")).strip(),
            description=str(table.get("description", "")).strip(),
        )
    return found


def _names(value: Any) -> dict[str, str]:
    """[sources.names]: a domain or feed URL → the name readers see (a TOML table, or
    "example.com=Example News, …" from the environment, split at each pair's last "=")."""
    return {k.strip(): v.strip() for k, v in _string_table(value, split_last=True).items()}


def _string_table(value: Any, *, split_last: bool = False) -> dict[str, str]:
    """A table of non-blank strings: a TOML table, or "key=value, …" from the environment."""
    if isinstance(value, str):
        cut = str.rsplit if split_last else str.split
        pairs = [cut(part, "=", 1) for part in value.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(value)
        value = {key.strip(): name.strip() for key, name in pairs}
    if not isinstance(value, dict) or not all(
        isinstance(v, str) and v.strip() for v in value.values()
    ):
        raise ValueError(value)
    return {str(k): str(v) for k, v in value.items()}


def _weights(value: Any) -> dict[str, float]:
    """A name → number table: a TOML table, or "Name=1.5, Other=0.5" from the environment."""
    if isinstance(value, str):
        pairs = [part.rsplit("=", 1) for part in value.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(value)
        value = {name.strip(): number.strip() for name, number in pairs}
    if not isinstance(value, dict):
        raise ValueError(value)
    weights = {}
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int | float | str):
            raise ValueError(number)
        weights[str(name)] = float(number)
    return weights


def _bounds(value: Any) -> tuple[float, float]:
    """Two numbers: a TOML array [0.5, 2.0], or "0.5,2.0" from the environment."""
    if isinstance(value, str):
        value = [part.strip() for part in value.strip("[] ").split(",")]
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(value)
    if any(isinstance(v, bool) or not isinstance(v, int | float | str) for v in value):
        raise ValueError(value)
    low, high = float(value[0]), float(value[1])
    return low, high


def _validate(s: Settings) -> None:
    if s.backend not in BACKENDS:
        raise SettingsError(
            f"unknown sender backend {s.backend!r}",
            f"set [delivery] backend (or --backend) to one of: {', '.join(BACKENDS)}",
        )
    if s.smtp_security not in SMTP_SECURITY:
        raise SettingsError(
            f"unknown SMTP security {s.smtp_security!r}",
            f"set [smtp] security to one of: {', '.join(SMTP_SECURITY)}",
        )
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise SettingsError(
            f"unknown time zone {s.timezone!r}",
            "set [newsletter] timezone to an IANA name such as 'Europe/Berlin' or 'UTC'",
        ) from e
    for name, low in (("top", 1), ("summary_sentences", 1), ("summary_chars", 40)):
        if getattr(s, name) < low:
            raise SettingsError(
                f"{name} must be at least {low}", f"raise [selection] {name} to {low} or more"
            )
    if not 0.0 < s.cluster_threshold <= 1.0:
        raise SettingsError(
            f"cluster_threshold must be above 0 and at most 1, got {s.cluster_threshold}",
            "set [selection] cluster_threshold to e.g. 0.42 (higher merges fewer articles)",
        )
    for name in ("max_per_source", "max_per_section", "min_stories"):
        if getattr(s, name) < 0:
            raise SettingsError(
                f"{name} must not be negative, got {getattr(s, name)}",
                f"set [selection] {name} to 0 or more (0 = no limit)",
            )
    if s.undated not in UNDATED:
        raise SettingsError(
            f"undated must be one of {', '.join(UNDATED)}, got {s.undated!r}",
            'set [selection] undated to "exclude" (articles without a date stay out of the '
            'lineup unless pinned) or "include"',
        )
    negative = sorted(name for name, weight in s.source_weights.items() if weight < 0)
    if negative:
        raise SettingsError(
            f"source_weights: the weight of {negative[0]!r} is negative",
            "give each source in [selection.source_weights] a weight of 0 or more (1 = neutral)",
        )
    lowest, highest = s.learned_weight_bounds
    if not (0 < lowest <= 1 <= highest < float("inf")):
        raise SettingsError(
            f"learned_weight_bounds must be [LOW, HIGH] with 0 < LOW <= 1 <= HIGH, "
            f"got [{lowest:g}, {highest:g}]",
            "set [selection] learned_weight_bounds to e.g. [0.5, 2.0] (what clicks may "
            "multiply a source's weight by; 1 = the weight as you set it)",
        )
    if not 1 <= s.batch_size <= 1000:
        raise SettingsError(
            f"batch_size must be between 1 and 1000, got {s.batch_size}",
            "set [delivery] batch_size within 1..1000 (SendGrid's limit per request)",
        )
    for name, low, high in (("workers", 1, 64), ("retries", 1, 20)):
        if not low <= getattr(s, name) <= high:
            raise SettingsError(
                f"{name} must be between {low} and {high}, got {getattr(s, name)}",
                f"set [delivery] {name} within {low}..{high}",
            )
    if s.max_requests_per_second < 0:
        raise SettingsError(
            f"max_requests_per_second must not be negative, got {s.max_requests_per_second}",
            "set [delivery] max_requests_per_second (requests/s to the provider, 0 = no limit)",
        )
    if s.rate < 0 or s.backoff < 0:
        raise SettingsError(
            f"rate and backoff must not be negative, got {s.rate} and {s.backoff}",
            "set [delivery] rate (messages/s, 0 = no limit) and backoff (seconds) to 0 or more",
        )
    if not 2 <= s.lease_seconds <= 3600:
        raise SettingsError(
            f"lease_seconds must be between 2 and 3600, got {s.lease_seconds}",
            "set [delivery] lease_seconds to how long a silent run keeps its send, e.g. 60",
        )
    if s.sendgrid_asm_group_id < 0:
        raise SettingsError(
            f"asm_group_id must not be negative, got {s.sendgrid_asm_group_id}",
            "set [sendgrid] asm_group_id to the id of an unsubscribe group in SendGrid "
            "(Suppressions → Unsubscribe Groups), or 0 for none",
        )
    for name, section in (("smtp_timeout", "smtp"), ("sendgrid_timeout", "sendgrid")):
        if not 0 < getattr(s, name) <= 3600:
            raise SettingsError(
                f"{name} must be above 0 and at most 3600 seconds, got {getattr(s, name)}",
                f"set [{section}] timeout to the seconds to wait for an answer, e.g. 30",
            )
    for name, high in (("fetch_timeout", 3600), ("ingest_timeout", 86400)):
        if not 0 < getattr(s, name) <= high:
            raise SettingsError(
                f"{name} must be above 0 and at most {high} seconds, got {getattr(s, name)}",
                f"set [sources] {name} to a number of seconds, e.g. "
                f"{Settings.__dataclass_fields__[name].default:g}",
            )
    if not 1 <= s.max_feeds_per_list <= 100_000:
        raise SettingsError(
            f"max_feeds_per_list must be between 1 and 100000, got {s.max_feeds_per_list}",
            "set [sources] max_feeds_per_list to the most feeds one OPML list may name, e.g. 500",
        )
    if s.track_clicks and not s.base_url:
        raise SettingsError(
            "[tracking] clicks needs base_url: the story links lead through digest serve",
            "set [newsletter] base_url to where 'digest serve' answers, or clicks = false",
        )
    if s.track_per_subscriber and not s.track_clicks:
        raise SettingsError(
            "[tracking] per_subscriber needs clicks = true: it says who clicked a tracked link",
            "set [tracking] clicks = true as well, or per_subscriber = false",
        )
    if s.join_per_ip < 1:
        raise SettingsError(
            f"join_per_ip must be at least 1, got {s.join_per_ip}",
            "set [web] join_per_ip to the requests to join one IP may make an hour, e.g. 20",
        )
    for origin in s.allowed_origins:
        if not origin.startswith(("https://", "http://")) or "/" in origin.split("://", 1)[1]:
            raise SettingsError(
                f"allowed_origins: {origin!r} is not an origin",
                'write each as scheme://host[:port], e.g. allowed_origins = ["https://example.com"]',
            )
    if s.base_url and not is_url(s.base_url):
        raise SettingsError(
            f"base_url must start with https://, got {s.base_url!r}",
            "set [newsletter] base_url (or DIGEST_BASE_URL) to e.g. https://news.example.com",
        )
    for name in ("name", "from_name", "from_email", "reply_to"):
        if any(c in getattr(s, name) for c in "\r\n\x00"):
            raise SettingsError(
                f"[newsletter] {name} contains a line break: {getattr(s, name)!r}",
                f"write [newsletter] {name} on one line (a line break there would end the "
                "mail header and fail every recipient)",
            )
    _validate_schedule(s)
    _validate_topics(s)
    if "@" not in s.from_email:
        raise SettingsError(
            f"from_email is not an address: {s.from_email!r}",
            "set [newsletter] from_email to the address the newsletter is sent from",
        )


APPROVAL = ("required", "auto")  # [schedule] approval
MAX_TOPIC = 200  # characters of one topic's name


def _validate_topics(s: Settings) -> None:
    """[topics] choices: names readers can tell apart, that a CSV cell can list (`;`)."""
    place = f"{s.config_path} [topics] choices" if s.config_path else "[topics] choices"
    seen: dict[str, str] = {}
    for choice in s.topics:
        if not choice.strip() or len(choice) > MAX_TOPIC or ";" in choice:
            raise SettingsError(
                f"{place}: {choice[:60]!r} is not a topic name",
                f"name each topic as its section or source is named (1 to {MAX_TOPIC} "
                'characters, no ";"), e.g. choices = ["Science Notes", "Technology"]',
            )
        if choice.strip().casefold() in seen:
            raise SettingsError(
                f"{place}: {choice!r} is listed twice",
                f"keep one of {seen[choice.strip().casefold()]!r} and {choice!r}",
            )
        seen[choice.strip().casefold()] = choice


def _validate_schedule(s: Settings) -> None:
    """[schedule]: both times parse, approval is known, editors are addresses."""
    if not s.scheduled:
        return
    from digest.schedule import cron_of

    place = f"{s.config_path} [schedule]" if s.config_path else "[schedule]"
    for key in ("draft", "send"):
        value = getattr(s, f"schedule_{key}")
        if not value:
            raise SettingsError(
                f"{place} {key}: missing (a schedule needs both draft and send)",
                f'add {key} = "fri 16:00" (or a cron line like "0 16 * * fri") to [schedule]',
            )
        cron_of(value, f"{place} {key}")
    if s.schedule_approval not in APPROVAL:
        raise SettingsError(
            f"{place} approval: must be one of {', '.join(APPROVAL)}, got {s.schedule_approval!r}",
            'set approval = "required" (an editor approves each issue) or "auto"',
        )
    bad = [a for a in s.schedule_editors if "@" not in a or any(c in a for c in " \r\n,;")]
    if bad:
        raise SettingsError(
            f"{place} editors: {bad[0]!r} is not an address",
            'list the editors\' addresses, e.g. editors = ["editor@example.org"]',
        )
    if not s.schedule_editors and s.schedule_approval == "required":
        raise SettingsError(
            f"{place} editors: nobody gets the review copy to approve",
            'list at least one address, e.g. editors = ["editor@example.org"]',
        )
