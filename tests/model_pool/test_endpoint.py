"""Black-box suspects over HTTP: EndpointModel against `mgmp serve`'s server and against broken fake servers."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Iterator

import pytest
import torch
from torch import nn

from model_pool.endpoint import EndpointModel, parse_endpoint_ref
from model_pool.errors import BadInput
from model_pool.io import load_model_dir
from model_pool.serve import MAX_BODY, serve_model

TIMEOUT = 0.5


@contextmanager
def running(server: ThreadingHTTPServer) -> Iterator[str]:
    """Serve in a background thread for the block; yield the /predict URL; always shut down and close."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def src(tiny_pool) -> nn.Module:
    model, _ = load_model_dir(tiny_pool / "models" / "src")
    return model


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(params=["probs", "logits", "labels"])
def served(request, src) -> Iterator[tuple[str, str]]:
    """``(url, kind)`` of the src model served with each output kind."""
    kind = request.param
    server = serve_model(src, port=0, labels_only=kind == "labels", output="probs" if kind == "labels" else kind)
    with running(server) as url:
        yield url, kind


def fake_server(status: int = 200, body: bytes | None = None, answer=None, delay: float = 0.0) -> ThreadingHTTPServer:
    """A server answering every POST with ``status`` and ``body`` (or ``answer(inputs)`` as JSON), after ``delay`` s."""
    seen: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(len(request["inputs"]))
            server.release.wait(delay)
            out = body if answer is None else json.dumps(answer(request["inputs"])).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:
            pass  # the client gave up (a timeout test): nothing to report

    server = Server(("127.0.0.1", 0), Handler)
    server.seen, server.release = seen, threading.Event()
    return server


def assert_one_line(e: pytest.ExceptionInfo, url: str, *words: str) -> None:
    message = str(e.value)
    assert "\n" not in message and url in message, message
    for word in words:
        assert word in message, message


# --- against the real server ------------------------------------------------------------------------

def test_endpoint_matches_local_model(served, src, x):
    url, kind = served
    suspect = EndpointModel(url, timeout=5, batch_size=4, num_classes=10)
    out = suspect(x)
    with torch.no_grad():
        local = src(x)
    assert out.shape == (10, 10) and out.dtype == torch.float32 and not out.requires_grad
    assert torch.equal(out.argmax(1), local.argmax(1))
    assert suspect.output_kind == kind and suspect.labels_only == (kind == "labels")
    assert suspect.queries == 10 and suspect.white_box is False and not suspect.state_dict()
    if kind != "labels":
        assert torch.allclose(out.softmax(1), local.softmax(1), atol=1e-5)


def test_output_never_requires_grad(served, x):
    url, _ = served
    out = EndpointModel(url, timeout=5, num_classes=10)(x.clone().requires_grad_())
    assert not out.requires_grad and out.grad_fn is None


def test_server_refuses_bad_requests(src):
    with running(serve_model(src)) as url:
        for payload, status in [(b"not json", 400), (b'{"inputs": "x"}', 400), (b'{"inputs": [[1, [2]]]}', 400),
                                (b'{"x": []}', 400), (b'{"inputs": [[1.0, 2.0]]}', 400)]:
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(urllib.request.Request(url, data=payload, method="POST"), timeout=5)
            assert e.value.code == status and "error" in json.loads(e.value.read())
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(url + "/other", data=b"{}", method="POST"), timeout=5)
        assert e.value.code == 404


def test_server_refuses_bodies_over_the_limit(src):
    with running(serve_model(src)) as url:
        port = int(url.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
            status_line = s.makefile("rb").readline().decode()
    assert " 413 " in status_line


def test_bad_model_inputs_come_back_as_one_line_errors(src):
    with running(serve_model(src)) as url:
        with pytest.raises(BadInput) as e:
            EndpointModel(url, timeout=5)(torch.rand(2, 3, 5))
    assert_one_line(e, url, "HTTP 400", "cannot take inputs")


class TinyText(nn.Module):
    """A text classifier that checks it receives int64 token ids."""

    input_kind = "text"

    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(20, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.int64
        return self.head(self.emb(x).mean(1))


def test_text_models_get_token_ids():
    model = TinyText().eval()
    ids = torch.randint(0, 20, (5, 7), generator=torch.Generator().manual_seed(1))
    with running(serve_model(model, output="logits")) as url:
        out = EndpointModel(url, timeout=5)(ids)
        with pytest.raises(BadInput) as e:
            EndpointModel(url, timeout=5)(ids.float() + 0.5)
    with torch.no_grad():
        assert torch.allclose(out, model(ids), atol=1e-5)
    assert_one_line(e, url, "HTTP 400", "token ids")


def test_serve_command_prints_one_line_and_returns(tiny_pool, monkeypatch, capsys):
    from mgmp.commands import serve as command
    from model_pool.serve import ModelServer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ModelServer, "serve_forever", interrupted)
    model = str(tiny_pool / "models" / "src")
    out = command.run(SimpleNamespace(model=model, host="127.0.0.1", port=0, labels_only=True, output="probs"))
    err = capsys.readouterr().err.strip().splitlines()
    assert out["model"] == model and out["url"].startswith("http://127.0.0.1:") and out["url"].endswith("/predict")
    assert err == [f"serving {model} on {out['url']} (labels); Ctrl-C stops"]


# --- queries and budget -----------------------------------------------------------------------------

def test_queries_count_rows_across_chunks(x):
    server = fake_server(answer=lambda inputs: {"logits": [[0.0, 1.0, 0.0]] * len(inputs)})
    with running(server) as url:
        suspect = EndpointModel(url, timeout=5, batch_size=4)
        out = suspect(x)
        assert out.shape == (10, 3) and server.seen == [4, 4, 2] and suspect.queries == 10
        suspect(x[:3])
    assert suspect.queries == 13 and server.seen == [4, 4, 2, 3]


def test_budget_refuses_before_sending(x):
    server = fake_server(answer=lambda inputs: {"logits": [[0.0, 1.0]] * len(inputs)})
    with running(server) as url:
        suspect = EndpointModel(url, timeout=5, max_queries=12, batch_size=4)
        suspect(x)
        with pytest.raises(BadInput) as e:
            suspect(x[:3])
    assert server.seen == [4, 4, 2] and suspect.queries == 10
    assert_one_line(e, url, "budget of 12", "--max-queries")


# --- malformed answers --------------------------------------------------------------------------------

MALFORMED = {
    "not JSON": (200, b"<html>oops</html>", "not JSON"),
    "no key": (200, b"{}", "none of"),
    "not an object": (200, b"[1, 2]", "none of"),
    "wrong row count": (200, json.dumps({"probs": [[0.5, 0.5]]}).encode(), "for 3 inputs"),
    "ragged": (200, json.dumps({"logits": [[1, 2], [3], [4, 5]]}).encode(), "ragged"),
    "non-numeric": (200, json.dumps({"logits": [["a", 1]] * 3}).encode(), "not numbers"),
    "NaN": (200, b'{"logits": [[NaN, 1], [0, 1], [0, 1]]}', "NaN"),
    "inf": (200, b'{"probs": [[Infinity, 1], [0, 1], [0, 1]]}', "NaN or inf"),
    "probs out of range": (200, json.dumps({"probs": [[2.0, -1.0] + [0.0] * 8] * 3}).encode(), "outside [0, 1]"),
    "wrong class count": (200, json.dumps({"logits": [[0.0, 1.0]] * 3}).encode(), "expected 10"),
    "labels out of range": (200, json.dumps({"labels": [0, 1, 10]}).encode(), "[0, 10)"),
    "fractional labels": (200, json.dumps({"labels": [0, 1.5, 2]}).encode(), "integers"),
    "status 500": (500, b'{"error": "model exploded"}', "HTTP 500"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_answers_are_one_line_bad_input(case):
    status, body, word = MALFORMED[case]
    with running(fake_server(status, body)) as url:
        with pytest.raises(BadInput) as e:
            EndpointModel(url, timeout=5, num_classes=10)(torch.rand(3, 4))
    assert_one_line(e, url, word)


def test_labels_need_num_classes():
    with running(fake_server(answer=lambda inputs: {"labels": [1] * len(inputs)})) as url:
        with pytest.raises(BadInput) as e:
            EndpointModel(url, timeout=5)(torch.rand(2, 4))
    assert_one_line(e, url, "num_classes")


def test_error_answers_carry_the_servers_message():
    with running(fake_server(500, b'{"error": "model exploded"}')) as url:
        with pytest.raises(BadInput) as e:
            EndpointModel(url, timeout=5)(torch.rand(1, 4))
    assert_one_line(e, url, "HTTP 500", "model exploded")


# --- unreachable and silent servers -------------------------------------------------------------------

@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose socket accepts connections (kernel backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def test_silent_server_times_out(silent_port):
    url = f"http://127.0.0.1:{silent_port}/predict"
    start = time.monotonic()
    suspect = EndpointModel(url, timeout=TIMEOUT)
    with pytest.raises(BadInput) as e:
        suspect(torch.rand(2, 4))
    assert TIMEOUT * 0.8 <= time.monotonic() - start < TIMEOUT * 4
    assert suspect.queries == 2  # sent, so spent
    assert_one_line(e, url, "--timeout", "0.5 s")


def test_slow_handler_times_out():
    server = fake_server(answer=lambda inputs: {"logits": [[0.0]] * len(inputs)}, delay=TIMEOUT * 4)
    with running(server) as url:
        start = time.monotonic()
        with pytest.raises(BadInput) as e:
            EndpointModel(url, timeout=TIMEOUT)(torch.rand(2, 4))
        assert time.monotonic() - start < TIMEOUT * 2.5
        server.release.set()
    assert_one_line(e, url, "--timeout")


def test_unreachable_port_is_bad_input():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    url = f"http://127.0.0.1:{port}/predict"
    suspect = EndpointModel(url, timeout=TIMEOUT)
    with pytest.raises(BadInput) as e:
        suspect(torch.rand(2, 4))
    assert_one_line(e, url, "refused")
    assert suspect.queries == 0


# --- references -----------------------------------------------------------------------------------------

def test_parse_endpoint_ref():
    assert parse_endpoint_ref("endpoint:http://127.0.0.1:8765/predict") == "http://127.0.0.1:8765/predict"
    assert parse_endpoint_ref("endpoint:https://example.org/v1") == "https://example.org/v1"
    assert parse_endpoint_ref("pool::src") is None and parse_endpoint_ref("models/src") is None
    for bad in ["endpoint:file:///etc/passwd", "endpoint:ftp://host/x", "endpoint:http://", "endpoint:"]:
        with pytest.raises(BadInput):
            parse_endpoint_ref(bad)
    with pytest.raises(BadInput):
        EndpointModel("file:///etc/passwd")
