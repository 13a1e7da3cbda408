"""The services' HTTP server (Starlette on uvicorn) over real sockets: routing, limits, failures, stopping."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from shared.web import MAX_REQUEST_BYTES, Request, Response, WebServer, metrics_route


def _echo(request: Request) -> Response:
    return Response.json(200, {"method": request.method, "path": request.path, "query": request.query,
                               "length": len(request.body), "type": request.headers.get("content-type")})


def _broken(_request: Request) -> Response:
    raise RuntimeError("a bug in a route")


@pytest.fixture
def server():
    web = WebServer("127.0.0.1", 0, {("GET", "/echo"): _echo, ("POST", "/echo"): _echo,
                                     ("GET", "/broken"): _broken, ("GET", "/metrics"): metrics_route}).start()
    yield web
    web.stop()


def test_routes_get_method_path_query_headers_and_body(server) -> None:
    url = f"http://127.0.0.1:{server.port}"
    assert server.port > 0
    got = httpx.get(f"{url}/echo?token=abc").json()
    assert got == {"method": "GET", "path": "/echo", "query": "token=abc", "length": 0, "type": None}
    posted = httpx.post(f"{url}/echo", content=b"x" * 1000, headers={"Content-Type": "message/rfc822"}).json()
    assert posted["length"] == 1000 and posted["type"] == "message/rfc822"
    metrics = httpx.get(f"{url}/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")


def test_unknown_paths_wrong_methods_and_broken_routes_get_plain_answers(server) -> None:
    url = f"http://127.0.0.1:{server.port}"
    assert (httpx.get(f"{url}/nope").status_code, httpx.get(f"{url}/nope").text) == (404, "not found\n")
    wrong = httpx.delete(f"{url}/echo")
    assert (wrong.status_code, wrong.text) == (405, "wrong method\n")
    broken = httpx.get(f"{url}/broken")
    assert (broken.status_code, broken.text) == (500, "internal error\n") and "Traceback" not in broken.text
    assert httpx.get(f"{url}/echo").status_code == 200, "the server survives a broken route"


def test_bodies_over_the_limit_are_refused_announced_or_streamed(server) -> None:
    url = f"http://127.0.0.1:{server.port}"
    announced = httpx.post(f"{url}/echo", content=b"x" * (MAX_REQUEST_BYTES + 1))
    assert (announced.status_code, announced.text) == (413, "request too large\n")

    def chunks():
        for _ in range(MAX_REQUEST_BYTES // 65536 + 2):
            yield b"y" * 65536

    streamed = httpx.post(f"{url}/echo", content=chunks())  # chunked: no Content-Length
    assert streamed.status_code == 413


def test_slow_requests_do_not_block_others_and_stop_frees_the_port() -> None:
    gate = threading.Event()

    def slow(_request: Request) -> Response:
        gate.wait(10)
        return Response.text(200, "slow")

    web = WebServer("127.0.0.1", 0, {("GET", "/slow"): slow, ("GET", "/fast"): lambda _r: Response.text(200, "fast")})
    web.start()
    url = f"http://127.0.0.1:{web.port}"
    waiting = threading.Thread(target=lambda: httpx.get(f"{url}/slow", timeout=15))
    waiting.start()
    assert httpx.get(f"{url}/fast", timeout=5).text == "fast\n"
    gate.set()
    waiting.join()
    web.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", web.port)) != 0
