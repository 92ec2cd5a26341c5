from __future__ import annotations

from pathlib import Path

import pytest

from bridge.delivery.routes import load_routes, parse_routes
from bridge.errors import ConfigError

ENV = {"TOKEN": "t1", "HS": "hubspot-secret", "U": "user", "P": "pass"}


def load(yaml_routes: str, env: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    import yaml

    return parse_routes(yaml.safe_load(yaml_routes), ENV if env is None else env, origin="f")


GENERIC = """
routes:
  zap:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: TOKEN}
    target: {calendar_id: "{{ payload.c }}", event_id: 42}
    note: hi
"""


def test_a_valid_route_is_built_with_defaults() -> None:
    route = load(GENERIC)["zap"]
    assert route.preset == "generic"
    assert route.respond == "sync"
    assert (route.max_attempts, route.max_age) == (10, 86400.0)
    assert route.mapping.event_id is not None and route.mapping.event_id.source == "42"


def test_preset_defaults_apply_when_the_route_is_silent() -> None:
    routes = load(
        """
routes:
  hs:
    preset: hubspot
    secret_env: HS
    target: {link: "deal:{{ event.objectId }}"}
    note: lost
"""
    )
    assert routes["hs"].respond == "ack"
    assert routes["hs"].mapping.when is not None
    assert "closedlost" in routes["hs"].mapping.when.source


def test_every_problem_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        load(
            """
routes:
  Bad Name:
    preset: generic
    target: {calendar_id: 1, event_id: 2}
    note: x
  zap:
    preset: nope
    target: {calendar_id: 1}
    note: x
    respond: later
    extra: 1
"""
        )
    text = "\n".join(info.value.problems)
    assert "f.routes.Bad Name" in text
    assert "f.routes.zap.preset" in text
    assert "calendar_id and event_id go together" in text
    assert "f.routes.zap.respond" in text
    assert "f.routes.zap.extra: Unknown field." in text


def test_unset_secret_variables_fail_at_startup_naming_them() -> None:
    with pytest.raises(ConfigError) as info:
        load(GENERIC, env={})
    assert info.value.problems == [
        "f.routes.zap.auth.token_env: environment variable TOKEN is not set"
    ]


def test_rotation_list_accepts_any_set_variable() -> None:
    doc = GENERIC.replace("token_env: TOKEN", "token_env: [TOKEN_OLD, TOKEN]")
    route = load(doc)["zap"]
    assert route.source is not None


def test_a_signing_preset_without_any_credential_never_passes_unchecked() -> None:
    with pytest.raises(ConfigError) as info:
        load(
            """
routes:
  z:
    preset: zendesk
    target: {calendar_id: 1, event_id: 2}
    note: x
"""
        )
    assert "f.routes.z" in info.value.problems[0]


def test_template_syntax_errors_are_startup_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load(GENERIC.replace("note: hi", 'note: "{{ payload.x "\n    when: "payload.a =="'))
    text = "\n".join(info.value.problems)
    assert "f.routes.zap.note: invalid Jinja2 template" in text
    assert "f.routes.zap.when: invalid Jinja2 expression" in text


@pytest.mark.parametrize(
    ("auth", "ok"),
    [
        ("{bearer_env: TOKEN}", True),
        ("{basic_user_env: U, basic_password_env: P}", True),
        ("{basic_user_env: [U], basic_password_env: [P, P]}", False),
        ("{header: X-T}", False),
        ("{header: X-T, token_env: TOKEN, bearer_env: TOKEN}", False),
        ("{token_env: 'not a name'}", False),
    ],
)
def test_auth_shapes(auth: str, ok: bool) -> None:
    doc = GENERIC.replace("{header: X-Bridge-Token, token_env: TOKEN}", auth)
    if ok:
        assert load(doc)["zap"]
    else:
        with pytest.raises(ConfigError):
            load(doc)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the route file"):
        load_routes(tmp_path / "missing.yaml", ENV)
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_routes(bad, ENV)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_routes(bad, ENV)


def test_shipped_example_config_is_valid() -> None:
    routes = load_routes(Path("config/bridge.yaml"), {"ZAP_TOKEN": "x"})
    assert "zap-cancel" in routes


def test_max_age_and_attempts_are_per_route() -> None:
    route = load(GENERIC.replace("note: hi", "note: hi\n    max_age: 2h\n    max_attempts: 3"))[
        "zap"
    ]
    assert (route.max_attempts, route.max_age) == (3, 7200.0)


def test_a_hubspot_workflow_route_without_when_is_refused_with_the_other_problems() -> None:
    # The workflow action fires for whatever the workflow enrols; with no default `when`, a
    # route without one would cancel on every webhook it receives.
    with pytest.raises(ConfigError) as info:
        load(
            """
routes:
  deal-lost:
    preset: hubspot-workflow
    secret_env: TOKEN
    target: {link: "deal:{{ payload.objectId }}"}
    note: lost
  zap:
    preset: generic
    auth: {header: X-T, token_env: UNSET}
    target: {calendar_id: 1, event_id: 2}
    note: x
"""
        )
    assert info.value.problems == [
        "f.routes.deal-lost.when: the hubspot-workflow preset needs a `when` (it has no default)",
        "f.routes.zap.auth.token_env: environment variable UNSET is not set",
    ]
