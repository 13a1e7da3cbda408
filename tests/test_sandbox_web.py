"""The sandbox's HTTP face on uvicorn: what a client sees on the wire, pinned (the "refuse" reset above all)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from services.sandbox import Sandbox
from services.sandbox.state import SandboxConfig, SandboxState
from services.sandbox.web import SandboxApp
from services.vendors.mailchimp import subscriber_hash
from shared.web import ThreadedServer

VISMA = {"Authorization": "Bearer sandbox-visma-token"}
MAILCHIMP_AUTH = ("any", "sandbox-us1")


@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    sandbox_server.reset()
    return sandbox_server


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=5)
    return conn


def _raw(sandbox: Sandbox, request: bytes) -> bytes:
    """Send raw bytes on a fresh connection; everything the server sends back until it closes."""
    with _connect(sandbox.http_url) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


def _get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: sandbox", "Connection: close", *headers, "", ""]
    return "\r\n".join(lines).encode()


def test_refuse_resets_the_connection_before_a_single_byte_of_answer(sandbox: Sandbox) -> None:
    """Pins uvicorn behaviour we rely on: the protocol's transport, aborted with linger 0, is a TCP reset."""
    sandbox.set_outage("visma", "refuse")
    with _connect(sandbox.http_url) as conn:
        conn.sendall(_get("/visma/v2/customers", "Authorization: Bearer sandbox-visma-token"))
        try:
            received: bytes | None = conn.recv(65536)
        except ConnectionResetError:
            received = None
    assert received is None, f"expected a reset, got {received!r}"  # b"" would be a polite close (FIN)
    [record] = sandbox.requests("visma")
    assert record["status"] is None
    assert sandbox.in_flight("visma") == 0


def test_refuse_is_per_vendor_and_the_server_keeps_serving(sandbox: Sandbox, http: httpx.Client) -> None:
    sandbox.set_outage("visma", "refuse", count=1)
    with pytest.raises(httpx.TransportError):
        http.get("/visma/v2/customers", headers=VISMA)
    assert http.get("/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH).status_code == 200
    assert http.get("/visma/v2/customers", headers=VISMA).status_code == 200  # the outage was for one request
    assert [r["status"] for r in sandbox.requests("visma")] == [None, 200]


def test_one_keep_alive_connection_carries_many_answers(sandbox: Sandbox) -> None:
    request = b"GET /mailchimp/3.0/ping HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Basic YW55OnNhbmRib3gtdXMx\r\n\r\n"
    with _connect(sandbox.http_url) as conn:
        conn.sendall(request * 3)  # pipelined: answered in order on the same connection
        received = b""
        deadline = time.monotonic() + 5
        while received.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            received += conn.recv(65536)
    assert received.count(b"HTTP/1.1 200") == 3
    assert len(sandbox.requests("mailchimp")) == 3


def test_an_empty_answer_has_no_body_and_no_content_type(sandbox: Sandbox) -> None:
    sandbox.seed({"mailchimp": {"members": ["a@x.se"]}})
    head = _raw(sandbox, _get("/_sandbox/health"))
    assert head.startswith(b"HTTP/1.1 200") and b"content-type: application/json" in head.lower()
    list_id = SandboxConfig().mailchimp_list_id
    path = f"/mailchimp/3.0/lists/{list_id}/members/{subscriber_hash('a@x.se')}/actions/delete-permanent"
    answer = _raw(sandbox, _get(path, "Authorization: Basic YW55OnNhbmRib3gtdXMx").replace(b"GET", b"POST", 1))
    header, _, body = answer.partition(b"\r\n\r\n")
    assert header.startswith(b"HTTP/1.1 204") and body == b""
    assert b"content-type" not in header.lower()


def test_unknown_vendor_unsupported_method_and_bad_control_input_get_clear_answers(sandbox: Sandbox,
                                                                                     http: httpx.Client) -> None:
    unknown = http.get("/stripe/v1/customers")
    assert unknown.status_code == 404 and "no vendor 'stripe'" in unknown.json()["message"]
    assert http.request("OPTIONS", "/mailchimp/3.0/ping").status_code == 501
    bad = http.post("/_sandbox/outage", content=b"[1, 2]")
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
    assert http.get("/_sandbox/nothing").status_code == 404
    assert sandbox.requests() == []  # none of these reached a vendor


def test_the_raw_request_target_reaches_the_fakes_with_its_escapes_and_query(sandbox: Sandbox,
                                                                             http: httpx.Client) -> None:
    http.get("/visma/v2/customers/a%2Fb", params={"$filter": "x eq 'y'", "empty": ""}, headers=VISMA)
    [record] = sandbox.requests("visma")
    assert record["path"] == "/v2/customers/a%2Fb"
    assert record["query"] == {"$filter": "x eq 'y'", "empty": ""}


def test_a_client_that_gives_up_mid_request_is_not_left_in_flight(sandbox: Sandbox) -> None:
    with sandbox.state_lock(), _connect(sandbox.http_url) as conn:  # the answer is held while the client goes
        conn.sendall(_get("/mailchimp/3.0/ping", "Authorization: Basic YW55OnNhbmRib3gtdXMx"))
        deadline = time.monotonic() + 5
        while sandbox.in_flight("mailchimp") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sandbox.in_flight("mailchimp") == 1
    deadline = time.monotonic() + 5
    while sandbox.in_flight("mailchimp") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sandbox.in_flight("mailchimp") == 0
    assert http_ok(sandbox)


def http_ok(sandbox: Sandbox) -> bool:
    with httpx.Client(base_url=sandbox.http_url, timeout=5) as client:
        return client.get("/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH).status_code == 200


def test_served_without_the_resetting_protocol_refuse_fails_loudly_instead_of_answering() -> None:
    """On plain uvicorn the app cannot reset, and says so (a 500) rather than pretending with some answer."""
    state = SandboxState(SandboxConfig())
    server = ThreadedServer(SandboxApp(state), "127.0.0.1", 0, http="h11").start()
    try:
        state.set_outage("visma", "refuse")
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get("/visma/v2/customers", headers=VISMA).status_code == 500
    finally:
        server.stop()


def test_many_requests_at_once_are_all_answered(sandbox: Sandbox, at_once) -> None:
    """More simultaneous requests than anyio's default 40 worker threads: none waits for another's thread."""
    statuses, together = at_once("visma", 60, "/visma/v2/customers", headers=VISMA)
    assert together == 60
    assert statuses == [200] * 60


def test_answers_on_a_kept_alive_connection_do_not_wait_for_delayed_acks(sandbox: Sandbox, http: httpx.Client) -> None:
    """Headers and body go out in two writes: without TCP_NODELAY each answer would wait ~40 ms (delayed ACK)."""
    took = []
    for _ in range(21):
        began = time.perf_counter()
        http.get("/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH)
        took.append(time.perf_counter() - began)
    assert sorted(took)[10] < 0.030, f"median {sorted(took)[10] * 1000:.1f} ms"
