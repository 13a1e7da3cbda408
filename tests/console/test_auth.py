"""Console security over real HTTP: login, rate limits, roles, CSRF, cookies, headers, logout, password hashing."""

from __future__ import annotations

import json

from click.testing import CliRunner

from services.cli.main import cli
from services.console.settings import ConsoleUser
from tests.console.conftest import form_token, opened


def test_every_page_needs_a_login(serve, ledger_url, db_backend) -> None:
    console = serve(ledger_url)
    with opened(console.client()) as anonymous:
        for path in ("/requests", "/dead-letters", "/intake", "/health", "/audit", "/requests/x"):
            resp = anonymous.get(path)
            assert resp.status_code == 303 and resp.headers["location"] == "/login", path
        assert anonymous.post("/requests/find", data={"user_id": "u-1"}).status_code == 403


def test_wrong_passwords_are_refused_then_rate_limited_even_for_the_right_one(serve, ledger_url, db_backend) -> None:
    console = serve(ledger_url, login_attempts=3, login_window_s=60)
    with opened(console.client()) as client:
        token = form_token(client.get("/login"))
        for _ in range(3):
            resp = client.post("/login", data={"csrf": token, "username": "vera", "password": "guess"})
            assert resp.status_code == 401 and "Wrong name or password" in resp.text
        resp = client.post("/login", data={"csrf": token, "username": "vera", "password": "viewer-password-1"})
        assert resp.status_code == 429 and int(resp.headers["retry-after"]) > 0
        assert "sid" not in client.cookies.get("erasure_console", "")
    # Another name from the same client is limited too (the client address counts failures).
    with opened(console.client()) as client:
        token = form_token(client.get("/login"))
        resp = client.post("/login", data={"csrf": token, "username": "otto", "password": "operator-password-1"})
        assert resp.status_code == 429


def test_login_form_without_its_token_is_refused(serve, ledger_url, db_backend) -> None:
    console = serve(ledger_url)
    with opened(console.client()) as client:
        client.get("/login")
        resp = client.post("/login", data={"username": "vera", "password": "viewer-password-1"})
        assert resp.status_code == 403


def test_session_cookie_is_httponly_samesite_and_secure_under_tls(serve, ledger_url, db_backend) -> None:
    plain = serve(ledger_url)
    with opened(plain.client()) as client:
        cookie = client.get("/login").headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    behind_tls = serve(ledger_url, cookie_secure=True)
    with opened(behind_tls.client()) as client:
        cookie = client.get("/login").headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "; secure" in cookie


def test_security_headers_forbid_framing_and_foreign_scripts(serve, ledger_url, db_backend) -> None:
    console = serve(ledger_url)
    with opened(console.login("vera")) as client:
        for path in ("/login", "/requests", "/no-such-page"):
            headers = client.get(path).headers
            csp = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'none'" in csp
            assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
            assert headers["server-timing"].startswith("app;dur=")


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(serve, ledger_url, db_backend) -> None:
    console = serve(ledger_url)
    with opened(console.login("otto")) as client:
        assert client.post("/logout").status_code == 403
        assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
        assert client.get("/requests").status_code == 200, "the refused logout must not have ended the session"
        purge = client.post("/dead-letters/payment/some-id/purge", data={"confirm": "yes"})
        assert purge.status_code == 403 and "did not come from the console" in purge.text


def test_viewers_cannot_reveal_replay_or_purge(serve, ledger_url, db_backend) -> None:
    console = serve(ledger_url)
    with opened(console.login("vera")) as client:
        token = form_token(client.get("/requests"))
        for action in ("reveal", "replay", "purge"):
            resp = client.post(f"/dead-letters/payment/some-id/{action}", data={"csrf": token, "confirm": "yes"})
            assert resp.status_code == 403 and "needs the operator role" in resp.text, action


def test_logout_ends_the_session_even_for_a_copied_cookie(serve, ledger_url, db_backend) -> None:
    console = serve(ledger_url)
    with opened(console.login("vera")) as client:
        copied = client.cookies.get("erasure_console")
        token = form_token(client.get("/requests"))
        assert client.post("/logout", data={"csrf": token}).headers["location"] == "/login"
        assert client.get("/requests").status_code == 303
    with opened(console.client()) as thief:
        thief.cookies.set("erasure_console", copied)
        resp = thief.get("/requests")
        assert resp.status_code == 303 and resp.headers["location"] == "/login"


def test_a_user_id_search_keeps_the_id_out_of_the_address_and_title(serve, ledger_url, db_backend) -> None:
    console = serve(ledger_url)
    with opened(console.login("vera")) as client:
        token = form_token(client.get("/requests"))
        resp = client.post("/requests/find", data={"csrf": token, "user_id": "u-secret-42"})
        assert resp.status_code == 200 and "u-secret-42" not in str(resp.url)
        title = resp.text.split("<title>", 1)[1].split("</title>", 1)[0]
        assert "u-secret-42" not in title


def test_hash_password_prints_a_users_entry_that_logs_in(serve, ledger_url, db_backend) -> None:
    result = CliRunner().invoke(cli, ["console", "hash-password", "--name", "ines", "--role", "operator"],
                                input="a long enough secret\na long enough secret\n")
    assert result.exit_code == 0, result.output
    entry = json.loads(result.output.strip().splitlines()[-1])
    assert entry["password_hash"].startswith("$argon2id$") and "a long enough secret" not in result.output
    console = serve(ledger_url, users=[ConsoleUser.model_validate(entry)])
    with opened(console.login("ines", "a long enough secret")) as client:
        assert "ines (operator)" in client.get("/requests").text


def test_hash_password_refuses_a_short_password() -> None:
    result = CliRunner().invoke(cli, ["console", "hash-password", "--name", "ines", "--role", "viewer"],
                                input="short\nshort\n")
    assert result.exit_code == 1 and "at least 12 characters" in result.output


def test_a_request_id_search_accepts_only_a_uuid(serve, ledger_url, db_backend) -> None:
    console = serve(ledger_url)
    with opened(console.login("vera")) as client:
        token = form_token(client.get("/requests"))
        upper = "3F0C2A9E-6D1B-4C57-9A51-0D7F3E8B9C10"
        found = client.post("/requests/find", data={"csrf": token, "request_id": upper})
        assert found.headers["location"] == "/requests/3f0c2a9e-6d1b-4c57-9a51-0d7f3e8b9c10"
        refused = client.post("/requests/find", data={"csrf": token, "request_id": "../logout"})
        assert refused.status_code == 400 and "is a UUID" in refused.text
