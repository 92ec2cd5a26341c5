"""The one renderer: every error, werkzeug's own and unexpected ones, is problem+json."""

from __future__ import annotations

from flask import Flask

from bridge.errors import InFlight, register_error_handlers


def make() -> Flask:
    app = Flask("t")
    app.config["MAX_CONTENT_LENGTH"] = 10

    @app.post("/busy")
    def busy() -> str:
        raise InFlight("in flight", delivery_id="dlv_x", headers={"Retry-After": "2"})

    @app.post("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    @app.post("/read")
    def read() -> str:
        from flask import request

        return str(len(request.get_data()))

    register_error_handlers(app)
    return app


def test_bridge_errors_carry_status_headers_and_fields() -> None:
    resp = make().test_client().post("/busy")
    assert resp.status_code == 409 and resp.headers["Retry-After"] == "2"
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json() == {
        "type": "urn:meetbit-bridge:problem:in-flight",
        "title": "Delivery in flight",
        "status": 409,
        "detail": "in flight",
        "delivery_id": "dlv_x",
    }


def test_werkzeug_errors_are_problems_too() -> None:
    client = make().test_client()
    assert client.get("/nowhere").get_json()["type"].endswith(":not-found")
    wrong = client.get("/busy")
    assert wrong.status_code == 405 and wrong.headers["Allow"]
    big = client.post("/read", data=b"x" * 100)
    assert big.status_code == 413 and big.mimetype == "application/problem+json"


def test_a_bug_is_a_bare_500_without_traceback_or_message() -> None:
    resp = make().test_client().post("/boom")
    assert resp.status_code == 500
    text = resp.get_data(as_text=True)
    assert "secret internals" not in text and "Traceback" not in text
    assert resp.get_json()["type"].endswith(":internal")
