"""The route file (`config/bridge.yaml`): validated by marshmallow, secrets resolved, expressions
compiled, preset adapters built, all at startup so nothing about a route fails at request time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import yaml
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from bridge.core.limits import MAX_ROUTE_NAME
from bridge.core.mapping import Expression, RouteMapping, Template, compile_check, names_used
from bridge.errors import ConfigError
from bridge.settings import parse_rate_limit
from bridge.sources import PRESETS, AuthConfig, HmacConfig, Source, SourceOptions
from bridge.writeback import SINKS, Sink, SinkConfig

ROUTE_NAME_RE = rf"^[a-z0-9][a-z0-9_-]{{0,{MAX_ROUTE_NAME - 1}}}$"
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(s|sec|m|min|h)\s*$")
_RATE_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
# The final outcomes a write-back may be made on (`on:`), as the delivery records them.
WRITE_BACK_ON = ("canceled", "already_canceled", "not_found", "dead")
DEFAULT_WRITE_BACK_TEXT = (
    "MeetBit meeting {{ result.event.title or result.event_id }}: "
    "{{ result.outcome | replace('_', ' ') }}"
)
# What a write-back's text may read besides `result`, stored with the delivery at intake.
CONTEXT_NAMES = ("payload", "event", "route")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class EnvNames(fields.Field[tuple[str, ...]]):
    """One environment variable name, or a list of them (rotation: any of them is accepted)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        names = [value] if isinstance(value, str) else value
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and _ENV_NAME_RE.match(n) for n in names)
        ):
            raise ValidationError("expected an environment variable name or a list of names")
        return tuple(names)


class TemplateText(fields.Field[str]):
    """A template; a bare number in YAML (`calendar_id: 12`) is a constant template."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("expected a string template")
        return str(value)


class Duration(fields.Field[float]):
    """Seconds, as a number or `30s`, `15m`, `24h`, `2d`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        match = _DURATION_RE.match(str(value)) if not isinstance(value, bool) else None
        if not match or float(match.group(1)) <= 0:
            raise ValidationError("expected a duration like 3600, 30m, 24h or 2d")
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


@dataclass(frozen=True)
class AuthSpec:
    header: str | None = None
    token_env: tuple[str, ...] = ()
    bearer_env: tuple[str, ...] = ()
    basic_user_env: tuple[str, ...] = ()
    basic_password_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class HmacSpec:
    header: str
    secret_env: tuple[str, ...]
    encoding: str
    prefix: str


@dataclass(frozen=True)
class TargetSpec:
    calendar_id: str | None = None
    event_id: str | None = None
    customer_email: str | None = None
    link: str | None = None


class AuthSchema(Schema):
    class Meta:
        unknown = RAISE

    header = fields.String(metadata={"description": "header carrying a shared token"})
    token_env = EnvNames(metadata={"description": "variable(s) holding the header token"})
    bearer_env = EnvNames(metadata={"description": "variable(s) holding bearer tokens"})
    basic_user_env = EnvNames(metadata={"description": "variable(s) holding Basic users"})
    basic_password_env = EnvNames(metadata={"description": "variable(s) holding Basic passwords"})

    @validates_schema
    def _one_scheme(self, data: dict[str, Any], **kwargs: Any) -> None:
        schemes = [
            bool(data.get("header") or data.get("token_env")),
            bool(data.get("bearer_env")),
            bool(data.get("basic_user_env") or data.get("basic_password_env")),
        ]
        if sum(schemes) != 1:
            raise ValidationError(
                "use exactly one of {header, token_env}, {bearer_env} or "
                "{basic_user_env, basic_password_env}"
            )
        if bool(data.get("header")) != bool(data.get("token_env")) and schemes[0]:
            raise ValidationError("header and token_env go together")
        users, passwords = data.get("basic_user_env", ()), data.get("basic_password_env", ())
        if schemes[2] and (not users or len(users) != len(passwords)):
            raise ValidationError(
                "basic_user_env and basic_password_env need the same number of names"
            )

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> AuthSpec:
        return AuthSpec(**data)


class HmacSchema(Schema):
    class Meta:
        unknown = RAISE

    header = fields.String(required=True)
    secret_env = EnvNames(required=True)
    encoding = fields.String(load_default="hex", validate=validate.OneOf(["hex", "base64"]))
    prefix = fields.String(load_default="")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> HmacSpec:
        return HmacSpec(**data)


class TargetSchema(Schema):
    class Meta:
        unknown = RAISE

    calendar_id = TemplateText(metadata={"description": "template rendering the calendar id"})
    event_id = TemplateText(metadata={"description": "template rendering the event id"})
    customer_email = TemplateText(
        metadata={"description": "cancel every linked upcoming event of this email"}
    )
    link = TemplateText(metadata={"description": "cancel the events stored under this link key"})

    @validates_schema
    def _one_form(self, data: dict[str, Any], **kwargs: Any) -> None:
        forms = [
            "calendar_id" in data or "event_id" in data,
            "customer_email" in data,
            "link" in data,
        ]
        if sum(forms) != 1:
            raise ValidationError(
                "use exactly one of {calendar_id, event_id}, customer_email or link"
            )
        if forms[0] and not ("calendar_id" in data and "event_id" in data):
            raise ValidationError("calendar_id and event_id go together")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> TargetSpec:
        return TargetSpec(**data)


class WriteBackSchema(Schema):
    """One `write_back` entry; which keys a sink takes is checked against its class."""

    class Meta:
        unknown = RAISE

    to = fields.String(required=True, validate=validate.OneOf(sorted(SINKS)))
    base_url = fields.String(metadata={"description": "the vendor's origin"})
    url = fields.String(metadata={"description": "webhook: where the outcome is posted"})
    object = fields.String(metadata={"description": "the record's type (deal, ticket...)"})
    record = TemplateText(metadata={"description": "template rendering the record's id"})
    text = TemplateText(metadata={"description": "template of the note; the marker is added"})
    on = fields.List(
        fields.String(validate=validate.OneOf(WRITE_BACK_ON)),
        validate=validate.Length(min=1),
        metadata={"description": "final outcomes written back (default [canceled])"},
    )
    rate_limit = fields.String(metadata={"description": "requests per time to this host"})

    @pre_load
    def _on_key(self, data: Any, **kwargs: Any) -> Any:
        # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    token_env = EnvNames()
    email_env = EnvNames()
    api_token_env = EnvNames()
    bearer_env = EnvNames()
    api_key_env = EnvNames()
    client_id_env = EnvNames()
    client_secret_env = EnvNames()
    secret_env = EnvNames()


class RouteSchema(Schema):
    class Meta:
        unknown = RAISE

    preset = fields.String(required=True, validate=validate.OneOf(sorted(PRESETS)))
    secret_env = EnvNames()
    auth = fields.Nested(AuthSchema)
    hmac = fields.Nested(HmacSchema)
    organization_ids = fields.List(fields.String(validate=validate.Length(min=1)))
    tolerance = fields.Float(load_default=300.0, validate=validate.Range(min=1, max=3600))
    when = fields.String(validate=validate.Length(min=1))
    target = fields.Nested(TargetSchema, required=True)
    note = TemplateText(required=True)
    respond = fields.String(validate=validate.OneOf(["sync", "ack"]))
    max_attempts = fields.Integer(load_default=10, validate=validate.Range(min=1, max=100))
    max_age = Duration(load_default=86400.0)
    write_back = fields.List(fields.Nested(WriteBackSchema))
    meetbit_account = fields.String(
        validate=validate.Regexp(ROUTE_NAME_RE),
        metadata={"description": "the `meetbit.accounts` entry to call (default: MEETBIT_*)"},
    )


class RateLimitText(fields.Field[float | None]):
    """`auto` (None) or a ceiling like `5/s`, `300/min`, as MEETBIT_RATE_LIMIT reads it."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValidationError("expected auto or requests per period, like 5/s or 300/min")
        try:
            return parse_rate_limit(str(value))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class EnvName(fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not _ENV_NAME_RE.match(value):
            raise ValidationError("expected an environment variable name")
        return value


class AccountSchema(Schema):
    class Meta:
        unknown = RAISE

    base_url_env = EnvName(required=True)
    key_id_env = EnvName(required=True)
    key_secret_env = EnvName(required=True)
    rate_limit = RateLimitText(load_default=None)


class MeetBitSchema(Schema):
    class Meta:
        unknown = RAISE

    accounts = fields.Dict(
        keys=fields.String(validate=validate.Regexp(ROUTE_NAME_RE)),
        values=fields.Nested(AccountSchema),
        load_default=dict,
    )


class RoutesFileSchema(Schema):
    class Meta:
        unknown = RAISE

    routes = fields.Dict(
        keys=fields.String(validate=validate.Regexp(ROUTE_NAME_RE)),
        values=fields.Nested(RouteSchema),
        required=True,
    )
    meetbit = fields.Nested(MeetBitSchema)


@dataclass(frozen=True)
class AccountConfig:
    """A MeetBit account of the route file, its variables resolved (`key_secret` never shown)."""

    name: str
    base_url: str
    key_id: str = field(repr=False)
    key_secret: str = field(repr=False)
    rate_limit: float | None  # calls per second, a ceiling; None: `auto`


@dataclass(frozen=True)
class WriteBackEntry:
    """One compiled `write_back` entry of a route."""

    index: int
    to: str
    sink: Sink
    record: Template | None
    text: Template
    on: frozenset[str]
    rate: tuple[int, float]  # requests per seconds, to the sink's host
    # Which of `payload`, `event`, `route` the text reads: kept with the delivery at intake.
    context: frozenset[str]


@dataclass(frozen=True)
class Route:
    name: str
    preset: str
    source: Source
    mapping: RouteMapping
    respond: str
    max_attempts: int
    max_age: float
    write_back: tuple[WriteBackEntry, ...] = ()
    # The route file's MeetBit account it calls; None: the MEETBIT_* variables.
    meetbit_account: str | None = None


class RouteFile(NamedTuple):
    routes: dict[str, Route]
    accounts: dict[str, AccountConfig]


# The account of the MEETBIT_* variables: a route file's account may not take its name.
DEFAULT_ACCOUNT = "default"


def _flatten(messages: Any, prefix: str) -> list[str]:
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            # marshmallow reports Dict entries as {name: {"key": [...], "value": {...}}}.
            key_text = "" if key in ("_schema", "value", "key") else str(key)
            if key == "key":
                value = [f"invalid route name (use {ROUTE_NAME_RE})"]
            if isinstance(key, int) and not isinstance(key, bool):  # an item: `write_back[0]`
                out += _flatten(value, f"{prefix}[{key}]")
                continue
            out += _flatten(value, f"{prefix}.{key_text}" if key_text else prefix)
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix}: {m}" for m in messages]
    if isinstance(messages, list):
        return [p for m in messages for p in _flatten(m, prefix)]
    return [f"{prefix}: {messages}"]


# Stands in for unset secrets when routes are loaded offline (`simulate`), where nothing is
# verified; it is valid for every preset (a base64 `whsec_` key is also a plain string).
OFFLINE_SECRET = "whsec_" + "A" * 43 + "="


class _Resolver:
    """Looks up `*_env` names. In a list, unset names are skipped (that is how a secret is
    rotated: set the new variable, move the sender, unset the old one, no YAML edit); a list
    with none of its variables set is a startup problem."""

    def __init__(self, environ: Mapping[str, str], problems: list[str], *, offline: bool) -> None:
        self.environ = environ
        self.problems = problems
        self.offline = offline

    def __call__(self, path: str, names: tuple[str, ...]) -> tuple[str, ...]:
        if not names:
            return ()
        values = tuple(v for v in (self.environ.get(n, "") for n in names) if v)
        if values:
            return values
        if self.offline:
            return (OFFLINE_SECRET,)
        self.problems.append(f"{path}: environment variable {' or '.join(names)} is not set")
        return ()

    def pairs(
        self, path: str, users: tuple[str, ...], passwords: tuple[str, ...]
    ) -> tuple[tuple[str, str], ...]:
        """Basic credentials, paired by position; a pair counts when both halves are set."""
        found = tuple(
            (self.environ.get(u, ""), self.environ.get(p, ""))
            for u, p in zip(users, passwords, strict=True)
        )
        usable = tuple((u, p) for u, p in found if u and p)
        if usable:
            return usable
        if self.offline:
            return ((OFFLINE_SECRET, OFFLINE_SECRET),)
        self.problems.append(
            f"{path}: no basic_user_env/basic_password_env pair is set "
            f"({', '.join(f'{u}+{p}' for u, p in zip(users, passwords, strict=True))})"
        )
        return ()


def _options(path: str, raw: dict[str, Any], resolve: _Resolver) -> SourceOptions:
    auth: AuthConfig | None = None
    spec: AuthSpec | None = raw.get("auth")
    if spec is not None:
        if spec.bearer_env:
            auth = AuthConfig(
                tokens=resolve(f"{path}.auth.bearer_env", spec.bearer_env), bearer=True
            )
        elif spec.token_env:
            auth = AuthConfig(
                header=spec.header, tokens=resolve(f"{path}.auth.token_env", spec.token_env)
            )
        else:
            basic = resolve.pairs(f"{path}.auth", spec.basic_user_env, spec.basic_password_env)
            auth = AuthConfig(basic=basic)
    mac: HmacConfig | None = None
    hspec: HmacSpec | None = raw.get("hmac")
    if hspec is not None:
        mac = HmacConfig(
            header=hspec.header,
            secrets=resolve(f"{path}.hmac.secret_env", hspec.secret_env),
            encoding=hspec.encoding,
            prefix=hspec.prefix,
        )
    return SourceOptions(
        secrets=resolve(f"{path}.secret_env", raw.get("secret_env", ())),
        auth=auth,
        hmac=mac,
        organization_ids=tuple(raw.get("organization_ids", ())),
        tolerance=raw["tolerance"],
    )


def _mapping(path: str, raw: dict[str, Any], preset: type[Source], problems: list[str]) -> Any:
    when_src: str | None = raw.get("when", preset.default_when)
    target: TargetSpec = raw["target"]
    sources: dict[str, tuple[str | None, bool]] = {
        "when": (when_src, True),
        "note": (raw["note"], False),
        "target.calendar_id": (target.calendar_id, False),
        "target.event_id": (target.event_id, False),
        "target.customer_email": (target.customer_email, False),
        "target.link": (target.link, False),
    }
    before = len(problems)
    if preset.requires_when and when_src is None:
        problems.append(f"{path}.when: the {preset.name} preset needs a `when` (it has no default)")
    for key, (text, is_expr) in sources.items():
        if text is not None and (err := compile_check(text, expression=is_expr)):
            problems.append(f"{path}.{key}: {err}")
    if len(problems) > before:
        return None

    def tpl(text: str | None) -> Template | None:
        return Template(text) if text is not None else None

    return RouteMapping(
        when=Expression(when_src) if when_src else None,
        note=Template(raw["note"]),
        calendar_id=tpl(target.calendar_id),
        event_id=tpl(target.event_id),
        customer_email=tpl(target.customer_email),
        link=tpl(target.link),
    )


def _rate(text: str) -> tuple[int, float] | None:
    match = _RATE_RE.match(text)
    if not match or int(match.group(1)) < 1:
        return None
    per = float(match.group(2) or 1) * _RATE_UNITS[match.group(3)]
    return (int(match.group(1)), per) if per > 0 else None


def _origin_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http(s) URL like https://acme.zendesk.com"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "no query, fragment or credentials in the URL (credentials go in *_env)"
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        # Credentials and customer data never travel in the clear, except to loopback.
        return "use https (plain http only to loopback)"
    return None


def _write_backs(
    path: str, entries: list[dict[str, Any]], resolve: _Resolver, problems: list[str]
) -> tuple[WriteBackEntry, ...]:
    built: list[WriteBackEntry] = []
    for index, raw in enumerate(entries):
        where = f"{path}.write_back[{index}]"
        before = len(problems)
        cls = SINKS[raw["to"]]
        allowed = set(cls.credentials) | {k for c in cls.credential_choices for k in c}
        for key in raw:
            if key.endswith("_env") and key not in allowed:
                problems.append(f"{where}.{key}: not used by {cls.name}")
        for key in cls.credentials:
            if key not in raw:
                problems.append(f"{where}.{key}: required by {cls.name}")
        if cls.credential_choices:
            complete = [c for c in cls.credential_choices if all(k in raw for k in c)]
            if len(complete) != 1:
                choices = " or ".join("{" + ", ".join(c) + "}" for c in cls.credential_choices)
                problems.append(f"{where}: {cls.name} needs exactly one of {choices}")
        if cls.objects:
            if "object" in raw and raw["object"] not in cls.objects:
                problems.append(f"{where}.object: must be one of: {', '.join(cls.objects)}")
        elif "object" in raw:
            problems.append(f"{where}.object: not used by {cls.name}")
        for key, needed in (("record", cls.needs_record), ("url", cls.needs_url)):
            if needed and key not in raw:
                problems.append(f"{where}.{key}: required by {cls.name}")
            elif not needed and key in raw:
                problems.append(f"{where}.{key}: not used by {cls.name}")
        base_url = raw.get("base_url", cls.default_base_url)
        if cls.needs_url:
            if "base_url" in raw:
                problems.append(f"{where}.base_url: not used by {cls.name} (use url)")
            base_url = raw.get("url", "")
        elif base_url is None:
            problems.append(f"{where}.base_url: required by {cls.name} (the vendor's origin)")
        for key in ("base_url", "url"):
            if key in raw and (err := _origin_problem(raw[key])):
                problems.append(f"{where}.{key}: {err}")
        rate = cls.default_rate
        if "rate_limit" in raw:
            parsed_rate = _rate(raw["rate_limit"])
            if parsed_rate is None:
                problems.append(f"{where}.rate_limit: expected requests per time, like 100/10s")
            else:
                rate = parsed_rate
        text_src = raw.get("text", DEFAULT_WRITE_BACK_TEXT)
        for key, text in (("record", raw.get("record")), ("text", text_src)):
            if text is not None and (err := compile_check(text, expression=False)):
                problems.append(f"{where}.{key}: {err}")
        if "record" in raw and not compile_check(raw["record"], expression=False):
            if "result" in names_used(raw["record"]):
                problems.append(
                    f"{where}.record: cannot use `result`: the record is rendered when the "
                    "webhook is received"
                )
        secrets: dict[str, str] = {}
        for key in sorted(allowed):
            if key in raw:
                values = resolve(f"{where}.{key}", raw[key])
                if values:
                    secrets[key] = values[0]
        if len(problems) > before:
            continue
        config = SinkConfig(
            base_url=str(base_url).rstrip("/"),
            object=raw.get("object"),
            url=raw.get("url"),
            secrets=secrets,
        )
        try:
            sink = cls(config)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        used = names_used(text_src)
        built.append(
            WriteBackEntry(
                index=index,
                to=cls.name,
                sink=sink,
                record=Template(raw["record"]) if "record" in raw else None,
                text=Template(text_src),
                on=frozenset(raw.get("on", ["canceled"])),
                rate=rate,
                context=frozenset(n for n in CONTEXT_NAMES if n in used),
            )
        )
    return tuple(built)


def parse_routes(
    document: Any, environ: Mapping[str, str], *, origin: str, offline: bool = False
) -> dict[str, Route]:
    """Validate a loaded YAML document and build every route; all problems in one ConfigError.

    `offline` lets unset secret variables pass (for `simulate`, which verifies nothing)."""
    return parse_route_file(document, environ, origin=origin, offline=offline).routes


def _accounts(
    origin: str, raw: dict[str, Any], environ: Mapping[str, str], problems: list[str], offline: bool
) -> dict[str, AccountConfig]:
    accounts: dict[str, AccountConfig] = {}
    for name, spec in raw.items():
        path = f"{origin}.meetbit.accounts.{name}"
        if name == DEFAULT_ACCOUNT:
            problems.append(f"{path}: `{DEFAULT_ACCOUNT}` is the MEETBIT_* variables' account")
            continue
        values: dict[str, str] = {}
        for what in ("base_url_env", "key_id_env", "key_secret_env"):
            value = environ.get(spec[what], "").strip()
            if not value and offline:
                value = "http://offline.invalid" if what == "base_url_env" else OFFLINE_SECRET
            if not value:
                problems.append(f"{path}.{what}: environment variable {spec[what]} is not set")
            values[what] = value
        url = values["base_url_env"]
        if url and urlsplit(url).scheme not in ("http", "https"):
            problems.append(f"{path}.base_url_env: expected an http(s) origin")
        accounts[name] = AccountConfig(
            name=name,
            base_url=url,
            key_id=values["key_id_env"],
            key_secret=values["key_secret_env"],
            rate_limit=spec["rate_limit"],
        )
    return accounts


def parse_route_file(
    document: Any, environ: Mapping[str, str], *, origin: str, offline: bool = False
) -> RouteFile:
    """The routes and the MeetBit accounts of a loaded YAML document; all problems in one
    ConfigError."""
    try:
        loaded = RoutesFileSchema().load(document if isinstance(document, dict) else {})
    except ValidationError as exc:
        raise ConfigError(_flatten(exc.messages, origin)) from exc
    problems: list[str] = []
    resolve = _Resolver(environ, problems, offline=offline)
    raw_accounts = loaded.get("meetbit", {}).get("accounts", {})
    accounts = _accounts(origin, raw_accounts, environ, problems, offline)
    routes: dict[str, Route] = {}
    for name, raw in loaded["routes"].items():
        path = f"{origin}.routes.{name}"
        preset = PRESETS[raw["preset"]]
        account = raw.get("meetbit_account")
        if account is not None and account not in raw_accounts:
            problems.append(f"{path}.meetbit_account: no account {account!r} in meetbit.accounts")
        options = _options(path, raw, resolve)
        mapping = _mapping(path, raw, preset, problems)
        write_back = _write_backs(path, raw.get("write_back", []), resolve, problems)
        if problems:
            continue
        try:
            source = preset(options)
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
            continue
        routes[name] = Route(
            name=name,
            preset=raw["preset"],
            source=source,
            mapping=mapping,
            respond=raw.get("respond", preset.default_respond),
            max_attempts=raw["max_attempts"],
            max_age=raw["max_age"],
            write_back=write_back,
            meetbit_account=account,
        )
    if problems:
        raise ConfigError(problems)
    return RouteFile(routes, accounts)


def load_routes(
    path: Path, environ: Mapping[str, str], *, offline: bool = False
) -> dict[str, Route]:
    return load_route_file(path, environ, offline=offline).routes


def load_route_file(path: Path, environ: Mapping[str, str], *, offline: bool = False) -> RouteFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the route file ({exc.strerror})"]) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from exc
    if not isinstance(document, dict):
        raise ConfigError([f"{path}: expected a mapping with a `routes` key"])
    return parse_route_file(document, environ, origin=str(path), offline=offline)
