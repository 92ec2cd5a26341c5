"""The console's pages. Each view reads its query or form, asks `bridge.delivery` for the page's
data and renders a template; sign-in, roles and CSRF are checked once, before every view."""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import Forbidden, HTTPException
from werkzeug.exceptions import NotFound as HTTPNotFound
from werkzeug.wrappers.response import Response as BaseResponse

from bridge.core.delivery import STATUSES
from bridge.delivery import admin as operations
from bridge.delivery import bulk, console
from bridge.delivery.admin import OUTCOMES, REPLAYABLE, DeliveryQuery
from bridge.errors import BridgeError, InvalidQuery, NotFound
from bridge.sources import InboundRequest
from bridge.web import get_bridge
from bridge.web.console.auth import COOKIE, LIFETIME, Session, Sessions, csrf_ok
from bridge.web.problems import http_problem_response
from bridge.web.throttle import FailedTokens

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

PREFIX = "/console"
# Before sign-in: a double-submit token of its own, so the sign-in form carries CSRF too.
LOGIN_COOKIE = "bridge_console_login"
PUBLIC_ENDPOINTS = frozenset({"console.login", "console.static"})
# No inline script or style anywhere: every script and sheet is a file of this package.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_ROWS = 50
F = TypeVar("F", bound=Callable[..., Any])


def _sessions() -> Sessions:
    sessions: Sessions = current_app.extensions["console_sessions"]
    return sessions


def _session() -> Session:
    session: Session = g.console_session
    return session


@bp.before_app_request
def _absent_without_token() -> None:
    """Every `/console` URL, static files included, is absent while the console is off."""
    if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
        return
    if get_bridge().settings.admin_token is None:
        raise HTTPNotFound()


@bp.before_request
def _signed_in() -> BaseResponse | None:
    g.console_session = _sessions().read(request.cookies.get(COOKIE))
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if g.console_session is None:
        if request.method == "GET":
            return redirect(url_for(".login", next=request.full_path.rstrip("?")))
        raise Forbidden("Your session has ended. Sign in again.")
    if request.method == "POST" and not csrf_ok(g.console_session, request.form.get("csrf_token")):
        # Nothing has run yet: a refused token changes nothing.
        raise Forbidden("This form has expired. Reload the page and try again.")
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        # Pages hold deliveries and payloads: never kept by a browser or a proxy.
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response | tuple[str, int]:
    if get_bridge().settings.admin_token is None:
        return http_problem_response(exc)  # the console is off: nothing here to show a page
    return _error_page(exc.code or 500, exc.name, exc.description or exc.name)


@bp.errorhandler(BridgeError)
def _bridge_error(exc: BridgeError) -> tuple[str, int]:
    messages = [f"{field}: {', '.join(m)}" for field, m in (exc.errors or {}).items()]
    return _error_page(exc.status, exc.title, exc.detail, messages)


def _error_page(
    status: int, title: str, detail: str, messages: list[str] | None = None
) -> tuple[str, int]:
    page = render_template(
        "error.html", status=status, title=title, detail=detail, messages=messages or []
    )
    return page, status


@bp.app_template_global()
def csrf_token() -> str:
    session: Session | None = g.get("console_session")
    return session.csrf if session is not None else ""


@bp.context_processor
def _globals() -> dict[str, Any]:
    return {"console_session": g.get("console_session"), "statuses": STATUSES}


@bp.app_template_filter("when")
def _when(moment: datetime | float | None) -> str:
    if moment is None:
        return "—"
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("ago")
def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


@bp.app_template_filter("body_text")
def _body_text(body: bytes) -> str:
    """A stored body as text, undecodable bytes shown as U+FFFD (escaped like any value)."""
    return body.decode("utf-8", errors="replace")


@bp.app_template_filter("json_text")
def _json_text(text: str) -> str:
    """JSON indented for reading; anything else (a SOAP envelope) as it is."""
    try:
        return _pretty(json.loads(text))
    except ValueError:
        return text


@bp.app_template_filter("pretty")
def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def admin_only(view: F) -> F:
    """The viewer role sees every page and changes nothing: such endpoints answer 403."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not _session().admin:
            raise Forbidden("The viewer role cannot change anything.")
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


# -- sign-in ----------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | tuple[Response, int]:
    # The admin API's count: guesses through either door add up.
    failures: FailedTokens = current_app.extensions["admin_failures"]
    address = request.remote_addr or "-"
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.console_session is not None:
            return redirect(target)
        return _login_page(target, None, 200)
    form_token, cookie_token = request.form.get("login_token"), request.cookies.get(LOGIN_COOKIE)
    if not form_token or not cookie_token or not secrets.compare_digest(form_token, cookie_token):
        return _login_page(target, "This form has expired. Try again.", 403)
    if (wait := failures.retry_after(address)) is not None:
        page, status = _login_page(target, f"Too many wrong tokens. Try again in {wait} s.", 429)
        page.headers["Retry-After"] = str(wait)
        return page, status
    role = _sessions().role_of(request.form.get("token", "").strip())
    if role is None:
        failures.failed(address)
        return _login_page(target, "Wrong token", 401)
    response = redirect(target)
    response.set_cookie(
        COOKIE,
        _sessions().open(role),
        max_age=int(LIFETIME.total_seconds()),
        path=PREFIX,
        secure=_secure(),
        httponly=True,
        samesite="Strict",
    )
    response.delete_cookie(
        LOGIN_COOKIE, path=PREFIX, secure=_secure(), httponly=True, samesite="Strict"
    )
    return response


def _login_page(target: str, error: str | None, status: int) -> tuple[Response, int]:
    nonce = secrets.token_urlsafe(24)
    page = Response(render_template("login.html", next=target, error=error, login_token=nonce))
    page.set_cookie(
        LOGIN_COOKIE, nonce, path=PREFIX, secure=_secure(), httponly=True, samesite="Strict"
    )
    return page, status


@bp.post("/logout")
def logout() -> BaseResponse:
    response = redirect(url_for(".login", signed_out=1))
    response.delete_cookie(COOKIE, path=PREFIX, secure=_secure(), httponly=True, samesite="Strict")
    return response


def _secure() -> bool:
    public = get_bridge().settings.public_url
    return request.is_secure or bool(public and public.startswith("https://"))


def _safe_next(value: str | None) -> str:
    """Only a console path of this site: never another host (an open redirect)."""
    default = url_for(".overview")
    if not value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value or not parts.path.startswith(PREFIX):
        return default
    if parts.path.startswith(PREFIX + "/login"):
        return default
    return value


# -- overview ---------------------------------------------------------------------------------


@bp.get("")
def overview() -> str:
    bridge = get_bridge()
    figures = console.overview(bridge)
    return render_template("overview.html", section="overview", figures=figures)


# -- deliveries -------------------------------------------------------------------------------

_FILTERS = ("status", "route", "outcome")


def _filters(args: Mapping[str, str]) -> dict[str, Any]:
    """The filters of the query string that hold a value (an empty select means any)."""
    return {name: args[name] for name in _FILTERS if args.get(name)}


@bp.get("/deliveries")
def deliveries() -> str:
    bridge = get_bridge()
    filters = _filters(request.args)
    search = request.args.get("search", "").strip()
    cursor = request.args.get("cursor") or None
    query = DeliveryQuery(**filters, search=search or None, cursor=cursor, limit=PAGE_ROWS)
    page = operations.list_deliveries(bridge.ledger, query)
    shown: dict[str, Any] = {**filters, **({"search": search} if search else {})}
    older = None
    if page.next_cursor is not None:
        older = url_for(".deliveries", **shown, cursor=page.next_cursor)
    replayable = any(d.status in REPLAYABLE for d in page.items)
    return render_template(
        "deliveries.html",
        section="deliveries",
        page=page,
        filters=filters,
        search=search,
        older=older,
        newest=url_for(".deliveries", **shown),
        paged=cursor is not None,
        replayable=replayable,
        routes=sorted(bridge.routes),
        outcomes=OUTCOMES,
    )


@bp.get("/deliveries/<delivery_id>")
def delivery(delivery_id: str) -> str:
    bridge = get_bridge()
    detail = console.delivery_detail(bridge, delivery_id)
    confirm = request.args.get("confirm") == "replay" and _session().admin
    return render_template(
        "delivery.html",
        section="deliveries",
        detail=detail,
        d=detail.delivery,
        confirm=confirm and detail.replayable,
        replayable=detail.replayable,
        # Only a flag in the URL: the page says what the delivery is now, never text from
        # the query string.
        replayed=request.args.get("replayed") == "1",
    )


@bp.post("/deliveries/<delivery_id>/replay")
@admin_only
def replay(delivery_id: str) -> BaseResponse:
    bridge = get_bridge()
    selection = operations.select_replay(bridge.ledger, [delivery_id])
    if selection.unknown:
        raise NotFound(f"no delivery {delivery_id[:60]!r}")
    report = operations.replay(bridge, selection)
    (item,) = report.replayed
    return redirect(url_for(".delivery", delivery_id=delivery_id, replayed=1))


# -- bulk replay ------------------------------------------------------------------------------


@bp.get("/replays/new")
@admin_only
def new_replay() -> str:
    filters = _filters(request.args)
    query = DeliveryQuery(**filters)
    selection = operations.select_replay(get_bridge().ledger, query=query)
    return render_template(
        "replay_new.html",
        section="deliveries",
        filters=filters,
        count=len(selection.deliveries),
        back=url_for(".deliveries", **filters),
    )


@bp.post("/replays")
@admin_only
def start_replay() -> BaseResponse:
    filters = _filters(request.form)
    query = DeliveryQuery(**filters)
    started = bulk.start_bulk_replay(get_bridge(), query=query)
    return redirect(url_for(".bulk_replay", replay_id=started.id))


@bp.get("/replays/<replay_id>")
def bulk_replay(replay_id: str) -> str:
    progress = bulk.bulk_replay_progress(get_bridge(), replay_id)
    return render_template("replay.html", section="deliveries", progress=progress)


@bp.get("/replays/<replay_id>/progress")
def bulk_replay_json(replay_id: str) -> Response:
    progress = bulk.bulk_replay_progress(get_bridge(), replay_id)
    shown = {
        "done": progress.done,
        "total": progress.total,
        "finished": progress.finished,
        "outcomes": progress.counts,
    }
    return Response(json.dumps(shown), mimetype="application/json")


# -- routes -----------------------------------------------------------------------------------


@bp.get("/routes")
def routes() -> str:
    bridge = get_bridge()
    shown = [
        (bridge.routes[name], console.mapping_of(bridge, name)) for name in sorted(bridge.routes)
    ]
    return render_template("routes.html", section="routes", routes=shown)


@bp.route("/routes/<name>/test", methods=["GET", "POST"])
def route_test(name: str) -> str:
    bridge = get_bridge()
    route = bridge.route(name)
    body = request.form.get("body", "")
    headers_text = request.form.get("headers", "")
    trial, problem = None, None
    if request.method == "POST":
        try:
            headers = _header_lines(headers_text)
        except InvalidQuery as exc:
            problem = exc.detail
        else:
            inbound = _pasted(route.name, body, headers)
            trial = operations.try_route(bridge.ledger, route, inbound)
    return render_template(
        "route_test.html",
        section="routes",
        route=route,
        view=console.mapping_of(bridge, route.name),
        body=body,
        headers=headers_text,
        trial=trial,
        problem=problem,
    )


def _header_lines(text: str) -> dict[str, str]:
    """`Name: value` lines, as a sender's log shows them; blank lines are skipped."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            raise InvalidQuery(f"Headers, line {number}: expected `Name: value`")
        found[name.strip().lower()] = value.strip()
    return found


def _pasted(route: str, body: str, headers: dict[str, str]) -> InboundRequest:
    """The pasted request as the hook would receive it now, at this bridge's own hook URL
    (what URL-signing senders such as HubSpot sign)."""
    origin = get_bridge().settings.public_url or f"{request.scheme}://{request.host}"
    content_type = headers.get("content-type", "application/json")
    return InboundRequest(
        method="POST",
        url=f"{origin}/hooks/{route}",
        headers=headers,
        query={},
        # Browsers send textarea lines with CRLF; a pasted JSON body was LF-separated.
        body=body.replace("\r\n", "\n").encode(),
        content_type=content_type.split(";", 1)[0].strip().lower(),
        received_at=time.time(),
    )


# -- links ------------------------------------------------------------------------------------


@bp.get("/links")
def links() -> str:
    ledger = get_bridge().ledger
    search = request.args.get("search", "").strip()
    cursor = request.args.get("cursor") or None
    if search:
        try:
            found = operations.links_of(ledger, search)
            items, more = found.links, None
        except NotFound:
            items, more = [], None
    else:
        page = operations.list_links(ledger, operations.PageRequest(cursor=cursor, limit=PAGE_ROWS))
        items, more = page.items, page.next_cursor
    return render_template(
        "links.html",
        section="links",
        items=items,
        search=search,
        older=url_for(".links", cursor=more) if more else None,
        deleted=request.args.get("deleted") == "1",
    )


@bp.post("/links/delete")
@admin_only
def delete_link() -> BaseResponse:
    key = request.form.get("key", "")
    calendar_id = _int_field("calendar_id")
    event_id = _int_field("event_id")
    operations.delete_links(get_bridge().ledger, key, calendar_id=calendar_id, event_id=event_id)
    return redirect(url_for(".links", deleted=1))


def _int_field(name: str) -> int | None:
    raw = request.form.get(name, "").strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= operations.MAX_ID:
        raise InvalidQuery("invalid link", errors={name: ["must be an id"]})
    return int(raw)
