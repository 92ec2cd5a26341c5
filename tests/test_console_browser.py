"""The operator console in a real browser: Debian's Chromium driven by Playwright, against the
bridge under real gunicorn and the MeetBit sandbox (one of each for the module).

Skipped where Chromium or Playwright is missing, except where BRIDGE_TEST_REQUIRE_BROWSER is set
(`.ci/run`). Every page is saved as a screenshot at laptop and phone width under the module's
temporary directory (`BRIDGE_CONSOLE_SHOTS` names another folder to keep them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.demo import signers
from bridge.demo.corpus import payload
from bridge.sandbox import SandboxConfig, SandboxServer
from bridge.testing import GunicornServer

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ADMIN_TOKEN = "admin-token-" + "x" * 20
VIEWER_TOKEN = "viewer-token-" + "y" * 20
HOOK_TOKEN = "hook-token"
HUBSPOT_SECRET = "hubspot-secret-for-the-console"
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

ROUTES = """
routes:
  zap:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "{{ payload.note | default('Canceled by automation', true) }}"
  zap-once:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    max_attempts: 1
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Gave up after one try"
  zap-bulk:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Replayed in bulk"
  hubspot-deal-lost:
    preset: hubspot-workflow
    secret_env: HUBSPOT_CLIENT_SECRET
    when: "payload.properties.dealstage.value == 'closedlost'"
    target:
      calendar_id: "{{ payload.properties.meetbit_calendar_id.value }}"
      event_id: "{{ payload.properties.meetbit_event_id.value }}"
    note: "Deal {{ payload.properties.dealname.value }} was lost"
"""


def _browser_or_skip() -> Any:
    required = bool(os.environ.get("BRIDGE_TEST_REQUIRE_BROWSER"))
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            pytest.fail("playwright is not installed but BRIDGE_TEST_REQUIRE_BROWSER is set")
        pytest.skip("playwright is not installed; browser tests skipped")
    if not Path(CHROMIUM).exists():
        if required:
            pytest.fail(f"{CHROMIUM} is missing but BRIDGE_TEST_REQUIRE_BROWSER is set")
        pytest.skip(f"{CHROMIUM} is missing; browser tests skipped")
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _browser_or_skip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def meetbit() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(rate_limit=0)) as server:
        yield server


@pytest.fixture(scope="module")
def bridge(meetbit: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bridge under gunicorn, the console on, no worker (failed deliveries stay failed
    until an operator replays them)."""
    folder = tmp_path_factory.mktemp("console")
    (folder / "bridge.yaml").write_text(ROUTES)
    env = {
        "MEETBIT_BASE_URL": meetbit.url,
        "MEETBIT_ACCESS_KEY_ID": meetbit.config.key_id,
        "MEETBIT_ACCESS_KEY_SECRET": meetbit.config.key_secret,
        "MEETBIT_RATE_LIMIT": "1000/s",
        "MEETBIT_TIMEOUT": "2,5",
        "BRIDGE_CONFIG": str(folder / "bridge.yaml"),
        "DATABASE_URL": f"sqlite:///{folder / 'ledger.db'}",
        "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
        "BRIDGE_CONSOLE_VIEWER_TOKEN": VIEWER_TOKEN,
        "ZAP_TOKEN": HOOK_TOKEN,
        "HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
    }
    with GunicornServer(env, log_path=folder / "bridge.log", cwd=folder) as server:
        yield server.url


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keep = os.environ.get("BRIDGE_CONSOLE_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tmp_path_factory.mktemp("screenshots")


def hook(bridge: str, route: str, body: dict[str, Any], **headers: str) -> requests.Response:
    return requests.post(
        f"{bridge}/hooks/{route}",
        json=body,
        headers={"X-Bridge-Token": HOOK_TOKEN, **headers},
        timeout=15,
    )


def sign_in(page: Any, bridge: str, token: str) -> None:
    page.goto(f"{bridge}/console/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console$"))


def shoot(page: Any, shots: Path, name: str) -> None:
    """The page at laptop width (full length) and at phone width."""
    size = page.viewport_size
    page.set_viewport_size(LAPTOP)
    page.screenshot(path=str(shots / f"{name}-laptop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(shots / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(size or LAPTOP)
    assert (shots / f"{name}-phone.png").stat().st_size > 0


@pytest.fixture
def page(browser: Any, bridge: str) -> Iterator[Any]:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def _sandbox_cancels(meetbit: SandboxServer, calendar_id: int, event_id: int) -> int:
    return int(meetbit.stats()["cancels"].get(f"{calendar_id}/{event_id}", 0))


def test_sign_in_wrong_token_and_sign_out(page: Any, bridge: str, shots: Path) -> None:
    from playwright.sync_api import expect

    page.goto(f"{bridge}/console")
    expect(page).to_have_url(re.compile(r"/console/login"))
    shoot(page, shots, "login")
    page.get_by_label("Token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong token")).to_be_visible()
    shoot(page, shots, "login-wrong")

    sign_in(page, bridge, ADMIN_TOKEN)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    for name in ("Deliveries", "Routes", "Links"):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "bridge_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in page.content()
    shoot(page, shots, "overview")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("Signed out.")).to_be_visible()
    page.goto(f"{bridge}/console/deliveries")
    expect(page).to_have_url(re.compile(r"/console/login"))


def test_dead_delivery_replayed_once(
    page: Any, bridge: str, meetbit: SandboxServer, shots: Path
) -> None:
    from playwright.sync_api import expect

    meetbit.config.failure_rate = 1.0
    try:
        answer = hook(bridge, "zap-once", {"calendar_id": 71, "event_id": 7101})
    finally:
        meetbit.config.failure_rate = 0.0
    assert answer.status_code == 502
    delivery_id = answer.json()["delivery_id"]

    sign_in(page, bridge, ADMIN_TOKEN)
    page.get_by_role("link", name="Deliveries", exact=True).click()
    page.get_by_label("Status").select_option("dead")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=dead"))
    shoot(page, shots, "deliveries-dead")
    row = page.get_by_role("row").filter(has_text="zap-once")
    expect(row.get_by_text("dead", exact=True)).to_be_visible()
    row.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(delivery_id))
    shoot(page, shots, "delivery-dead")

    page.get_by_role("button", name="Replay").click()
    shoot(page, shots, "delivery-confirm")
    page.get_by_role("button", name="Confirm").click()
    summary = page.locator("section", has=page.get_by_role("heading", name="Summary"))
    expect(summary.get_by_text("succeeded", exact=True)).to_be_visible()
    expect(page.get_by_text("Replayed: canceled.")).to_be_visible()
    assert _sandbox_cancels(meetbit, 71, 7101) == 1
    shoot(page, shots, "delivery-replayed")
    # A second look (or a reload) cancels nothing again.
    page.reload()
    assert _sandbox_cancels(meetbit, 71, 7101) == 1


def test_bulk_replay_of_20_failed_deliveries(
    page: Any, bridge: str, meetbit: SandboxServer, shots: Path
) -> None:
    from playwright.sync_api import expect

    events = list(range(7601, 7621))
    meetbit.config.failure_rate = 1.0
    try:
        for event_id in events:
            answer = hook(bridge, "zap-bulk", {"calendar_id": 76, "event_id": event_id})
            assert answer.status_code == 502  # no worker: failed, for an operator to replay
    finally:
        meetbit.config.failure_rate = 0.0

    sign_in(page, bridge, ADMIN_TOKEN)
    page.goto(f"{bridge}/console/deliveries?status=failed&route=zap-bulk")
    expect(page.get_by_role("row").filter(has_text="zap-bulk")).to_have_count(20)
    page.get_by_role("button", name="Replay all").click()
    expect(page.get_by_text("Run 20 failed or dead deliveries")).to_be_visible()
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(re.compile(r"/console/replays/"))
    expect(page.locator(".progress-figure")).to_have_text("20 / 20", timeout=30_000)
    expect(page.get_by_text("Finished.")).to_be_visible()
    expect(page.locator("[data-outcomes]")).to_contain_text("canceled 20")
    shoot(page, shots, "bulk-replay")
    assert all(_sandbox_cancels(meetbit, 76, e) == 1 for e in events)
    page.goto(f"{bridge}/console/deliveries?status=failed&route=zap-bulk")
    expect(page.get_by_text("No deliveries match these filters.")).to_be_visible()


def test_search_finds_a_delivery_and_secrets_stay_off_the_page(
    page: Any, bridge: str, meetbit: SandboxServer, shots: Path
) -> None:
    from playwright.sync_api import expect

    answer = hook(bridge, "zap", {"calendar_id": 77, "event_id": 7701, "email": "ana@example.com"})
    assert answer.status_code == 200
    sign_in(page, bridge, ADMIN_TOKEN)
    page.get_by_role("link", name="Deliveries", exact=True).click()
    page.get_by_label("Search").fill("7701")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"search=7701"))
    rows = page.get_by_role("row").filter(has_text="zap")
    expect(rows).to_have_count(1)
    rows.get_by_role("link").first.click()
    request = page.locator("section", has=page.get_by_role("heading", name="Request as received"))
    expect(request.get_by_text("x-bridge-token", exact=True)).to_be_visible()
    expect(request).to_contain_text('"event_id": 7701')
    answer_panel = page.locator(
        "section", has=page.get_by_role("heading", name="Answer to the sender")
    )
    expect(answer_panel).to_contain_text("HTTP 200")
    shoot(page, shots, "delivery-detail")
    content = page.content()
    for secret in (HOOK_TOKEN, ADMIN_TOKEN, VIEWER_TOKEN, meetbit.config.key_secret):
        assert secret not in content


def test_viewer_cannot_replay(page: Any, bridge: str, meetbit: SandboxServer) -> None:
    from playwright.sync_api import expect

    meetbit.config.failure_rate = 1.0
    try:
        answer = hook(bridge, "zap-once", {"calendar_id": 72, "event_id": 7201})
    finally:
        meetbit.config.failure_rate = 0.0
    delivery_id = answer.json()["delivery_id"]

    sign_in(page, bridge, VIEWER_TOKEN)
    page.goto(f"{bridge}/console/deliveries?status=dead")
    expect(page.get_by_role("row").filter(has_text="zap-once").first).to_be_visible()
    expect(page.get_by_role("button", name="Replay all")).to_have_count(0)
    page.goto(f"{bridge}/console/deliveries/{delivery_id}?confirm=replay")
    expect(page.get_by_role("heading", name="Summary")).to_be_visible()
    expect(page.get_by_role("button", name="Replay")).to_have_count(0)
    expect(page.get_by_role("button", name="Confirm")).to_have_count(0)

    # The endpoint itself, with the viewer's own session and CSRF token: 403, nothing done.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = page.request.post(
        f"{bridge}/console/deliveries/{delivery_id}/replay", form={"csrf_token": csrf}
    )
    assert refused.status == 403
    assert _sandbox_cancels(meetbit, 72, 7201) == 0
    page.goto(f"{bridge}/console/deliveries/{delivery_id}")
    summary = page.locator("section", has=page.get_by_role("heading", name="Summary"))
    expect(summary.get_by_text("dead", exact=True)).to_be_visible()


def test_refused_csrf_token_changes_nothing(page: Any, bridge: str, meetbit: SandboxServer) -> None:
    meetbit.config.failure_rate = 1.0
    try:
        answer = hook(bridge, "zap-once", {"calendar_id": 73, "event_id": 7301})
    finally:
        meetbit.config.failure_rate = 0.0
    delivery_id = answer.json()["delivery_id"]
    sign_in(page, bridge, ADMIN_TOKEN)
    for form in ({}, {"csrf_token": "forged"}):
        refused = page.request.post(
            f"{bridge}/console/deliveries/{delivery_id}/replay", form=form, max_redirects=0
        )
        assert refused.status == 403
    assert _sandbox_cancels(meetbit, 73, 7301) == 0


def test_route_tester_on_a_hubspot_sample(page: Any, bridge: str, shots: Path) -> None:
    from playwright.sync_api import expect

    body = payload("hubspot-workflow", "legacy.json")
    url = f"{bridge}/hooks/hubspot-deal-lost"
    headers = {"Content-Type": "application/json"}
    headers.update(signers.hubspot_v3_headers(HUBSPOT_SECRET, url, body))

    sign_in(page, bridge, ADMIN_TOKEN)
    page.get_by_role("link", name="Routes", exact=True).click()
    shoot(page, shots, "routes")
    route = page.locator("section", has_text="/hooks/hubspot-deal-lost")
    route.get_by_role("link", name="Test").click()
    page.get_by_label("Headers").fill("\n".join(f"{k}: {v}" for k, v in headers.items()))
    page.get_by_label("Body").fill(body.decode())
    page.get_by_role("button", name="Run").click()
    result = page.locator("section", has=page.get_by_role("heading", name="Result"))
    expect(result.get_by_text("verified", exact=True)).to_be_visible()
    expect(result.get_by_text("payload.properties.dealstage.value == 'closedlost'")).to_be_visible()
    expect(result).to_contain_text("calendar 12, event 345")
    expect(result).to_contain_text("Deal ACME renewal was lost")
    shoot(page, shots, "route-test")

    # The same request with its body changed after signing is refused, and still mapped.
    page.get_by_label("Body").fill(body.decode().replace("ACME", "ACNE"))
    page.get_by_role("button", name="Run").click()
    expect(result.get_by_text("refused", exact=True)).to_be_visible()
    expect(result).to_contain_text("signature_mismatch")
    expect(result).to_contain_text("Deal ACNE renewal was lost")


XSS = '<script>window.__pwned = 1; alert("x")</script><img src=x onerror="window.__pwned=2">'


def test_hostile_payload_stays_text(page: Any, bridge: str, shots: Path) -> None:
    from playwright.sync_api import expect

    answer = hook(
        bridge,
        "zap",
        {"calendar_id": 74, "event_id": 7401, "note": XSS},
        **{"Idempotency-Key": XSS},
    )
    assert answer.status_code == 200
    delivery_id = answer.json()["delivery_id"]
    mapped = hook(bridge, "zap", {"calendar_id": XSS, "event_id": 1})
    assert mapped.status_code == 422

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, bridge, ADMIN_TOKEN)
    for path in (f"/console/deliveries/{delivery_id}", "/console/deliveries",
                 f"/console/deliveries/{mapped.json()['delivery_id']}"):  # fmt: skip
        page.goto(bridge + path)
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        assert page.evaluate("window.__pwned") is None
        # Only the console's own script; no element came from the payload.
        assert page.locator("script").count() == 1
        assert page.locator("img").count() == 0
    page.goto(f"{bridge}/console/deliveries/{delivery_id}")
    expect(page.get_by_text(XSS).first).to_be_visible()
    shoot(page, shots, "delivery-hostile")
    assert dialogs == []


def test_every_control_reachable_by_keyboard_and_labelled(
    page: Any, bridge: str, meetbit: SandboxServer, shots: Path
) -> None:
    meetbit.config.failure_rate = 1.0
    try:
        dead = hook(bridge, "zap-once", {"calendar_id": 75, "event_id": 7501}).json()
    finally:
        meetbit.config.failure_rate = 0.0
    requests.put(
        f"{bridge}/admin/links/jane@example.com",
        json={"calendar_id": 9, "event_id": 901},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    ).raise_for_status()
    sign_in(page, bridge, ADMIN_TOKEN)
    pages = ["/console", "/console/deliveries", "/console/routes", "/console/links",
             "/console/routes/zap/test", f"/console/deliveries/{dead['delivery_id']}",
             f"/console/deliveries/{dead['delivery_id']}?confirm=replay",
             "/console/replays/new?status=dead"]  # fmt: skip
    for path in pages:
        page.goto(bridge + path)
        controls = page.evaluate(_CONTROLS)
        assert controls, path
        unnamed = [c["html"] for c in controls if not c["name"]]
        assert unnamed == [], f"{path}: controls without an accessible name: {unnamed}"
        reached: set[int] = set()
        for _ in range(len(controls) + 5):
            page.keyboard.press("Tab")
            index = page.evaluate("window.__controls.indexOf(document.activeElement)")
            if index >= 0:
                reached.add(index)
        missed = [c["html"] for i, c in enumerate(controls) if i not in reached]
        assert missed == [], f"{path}: not reachable with Tab: {missed}"
    page.goto(bridge + "/console/links")
    shoot(page, shots, "links")


# Every visible control of the page, with the name a screen reader announces: its label,
# aria-label, or text. Kept on `window` so the Tab walk can find each one's index.
_CONTROLS = """() => {
  const selector = 'a[href], button, input:not([type=hidden]), select, textarea';
  const all = [...document.querySelectorAll(selector)]
    .filter(el => el.offsetParent !== null || el.getClientRects().length);
  window.__controls = all;
  return all.map(el => {
    const labels = el.labels ? [...el.labels].map(l => l.textContent.trim()).join(' ') : '';
    const text = el.textContent || el.value || '';
    const name = (el.getAttribute('aria-label') || labels || text).trim();
    return {name, html: el.outerHTML.slice(0, 120)};
  });
}"""
