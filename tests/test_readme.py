"""The README's examples work as written: every route block is run with its sender's signed
sample (and the demo runs the same routes), every `curl` example is sent to the bridge, and
the `simulate` example runs on the shipped files under `config/`."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from click.testing import CliRunner
from flask import Flask

from bridge.cli import cli
from bridge.demo import signers
from bridge.demo.corpus import payload
from bridge.demo.credentials import ADMIN_TOKEN, ENV
from bridge.demo.samples import demo_samples
from bridge.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SAMPLES = {sample.route: sample for sample in demo_samples()}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def yaml_blocks() -> list[dict[str, Any]]:
    return [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```", README, re.M | re.S)]


def readme_routes() -> dict[str, list[dict[str, Any]]]:
    """Each route name of the README's blocks, with every block that defines it (a sender's
    section and, say, the write-back section may show the same route)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for block in yaml_blocks():
        for name, route in block["routes"].items():
            found.setdefault(name, []).append(route)
    return found


def readme_route(name: str) -> dict[str, Any]:
    """The README's block for a route: the demo's own where the demo runs it, else the first."""
    blocks = readme_routes()[name]
    sample = SAMPLES.get(name)
    return next((b for b in blocks if sample and b == sample.route_config), blocks[0])


def commands(program: str) -> list[list[str]]:
    """Every indented command line of the README starting with `program`, continuation
    lines joined, split as a shell would."""
    text = README.replace("\\\n", " ")
    lines = re.findall(rf"^    ({re.escape(program)} .*)$", text, re.M)
    return [shlex.split(line.split("   #")[0]) for line in lines]


def test_every_demo_route_is_in_the_readme_as_the_demo_runs_it() -> None:
    routes = readme_routes()
    for name, sample in SAMPLES.items():
        assert sample.route_config in routes.get(name, []), name


def _status(expect: str) -> int:
    return int(expect.split()[0])


@pytest.mark.parametrize("route", sorted(SAMPLES))
def test_each_readme_route_answers_its_senders_sample(
    route: str, make_app: Callable[..., Flask], sandbox: SandboxServer
) -> None:
    config = {"routes": {route: readme_route(route)}}
    sample = SAMPLES[route]
    app = make_app(yaml.safe_dump(config), BRIDGE_ADMIN_TOKEN=ADMIN_TOKEN, **sample.env)
    client = app.test_client()
    url = f"http://localhost/hooks/{route}"
    for call in sample.calls:
        for method, path, body in call.before:
            assert client.open(path, method=method, json=body, headers=ADMIN).status_code < 300
        body, headers = call.build(url)
        resp = client.post(url, data=body, headers=headers)
        assert resp.status_code == _status(call.expect), (call.label, resp.get_data(as_text=True))


def test_the_hubspot_workflow_route_reads_the_flat_and_the_legacy_shape(
    make_app: Callable[..., Flask], sandbox: SandboxServer
) -> None:
    config = {"routes": {"hubspot-deal-lost": readme_route("hubspot-deal-lost")}}
    app = make_app(yaml.safe_dump(config), HUBSPOT_CLIENT_SECRET=ENV["HUBSPOT_CLIENT_SECRET"])
    client = app.test_client()
    url = "http://localhost/hooks/hubspot-deal-lost"
    for name in ("flat.json", "legacy.json"):
        body = payload("hubspot-workflow", name)
        headers = signers.hubspot_v3_headers(ENV["HUBSPOT_CLIENT_SECRET"], url, body)
        resp = client.post(url, data=body, headers=headers, content_type="application/json")
        assert resp.status_code == 200, (name, resp.get_json())
        # Both bodies are the same deal: the second finds the event canceled by the first.
        assert resp.get_json()["outcome"] in ("canceled", "already_canceled"), name
    canceled = sandbox.calls()
    assert [(c["calendar_id"], c["event_id"]) for c in canceled] == [(12, 345)]
    assert sandbox.state.canceled[(12, 345)]["cancel_note"] == "Deal ACME renewal was lost"


def test_the_zendesk_trigger_route_renders_its_link_and_note(
    make_app: Callable[..., Flask], sandbox: SandboxServer
) -> None:
    config = {"routes": {"zendesk-trigger": readme_route("zendesk-trigger")}}
    secret = ENV["ZENDESK_SIGNING_SECRET"]
    app = make_app(
        yaml.safe_dump(config), ZENDESK_SIGNING_SECRET=secret, BRIDGE_ADMIN_TOKEN=ADMIN_TOKEN
    )
    client = app.test_client()
    link = {"calendar_id": 8, "event_id": 802}
    assert (
        client.put("/admin/links/zendesk-ticket:35436", json=link, headers=ADMIN).status_code < 300
    )
    body = payload("zendesk", "trigger_solved.json")
    resp = client.post(
        "/hooks/zendesk-trigger",
        data=body,
        headers=signers.zendesk_headers(secret, body),
        content_type="application/json",
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["outcome"] == "canceled"
    [call] = sandbox.calls()
    assert (call["calendar_id"], call["event_id"]) == (8, 802)
    assert sandbox.state.canceled[(8, 802)]["cancel_note"] == "Ticket 35436 was solved"


def test_the_simulate_example_runs_on_the_shipped_files(monkeypatch: pytest.MonkeyPatch) -> None:
    [example] = [c for c in commands("meetbit-bridge") if c[1] == "simulate"]
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, example[1:], env={"BRIDGE_CONFIG": "config/bridge.yaml"})
    assert result.exit_code == 0, result.output
    assert "cancel calendar 12 event 345" in result.output


def _send(app: Flask, argv: list[str], env: dict[str, str]) -> Any:
    """Send one README `curl` command to `app` (its URL's path; `-X`, `-H`, `-d`)."""
    method, headers, data, url = "GET", {}, None, ""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-X":
            method = next(args)
        elif arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], value.strip())
        elif arg == "-d":
            data = next(args)
            method = "POST" if method == "GET" else method
        elif arg.startswith("-"):
            continue  # -s and the like
        else:
            url = arg
    path = urlsplit(url if "://" in url else f"http://{url}").path
    return app.test_client().open(path, method=method, headers=headers, data=data)


def test_every_curl_example_gets_the_answer_the_readme_implies(
    make_app: Callable[..., Flask], sandbox: SandboxServer
) -> None:
    env = {"ZAP_TOKEN": "change-me", "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN}
    app = make_app((ROOT / "config" / "bridge.yaml").read_text(), **env)
    examples = commands("curl")
    assert len(examples) >= 2
    for argv in examples:
        resp = _send(app, argv, env)
        assert resp.status_code in (200, 201, 204), (argv, resp.get_data(as_text=True))
    assert [(c["calendar_id"], c["event_id"]) for c in sandbox.calls()] == [(12, 345)]
