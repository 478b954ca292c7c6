"""Expose a model as the HTTP JSON API that ``endpoint:URL`` suspects speak (``mgmp serve``).

``POST /`` or ``/predict`` with ``{"inputs": nested list}`` answers ``{"probs": ...}`` (softmax),
``{"logits": ...}`` or, labels-only, ``{"labels": ...}``; bad requests get 400 with ``{"error": ...}``,
bodies over ``MAX_BODY`` get 413. Standard library HTTP only; one lock serialises the model calls.
"""
from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from torch import nn

from model_pool.errors import BadInput, first_line

MAX_BODY = 64 << 20
OUTPUTS = ("probs", "logits")
PATHS = ("/", "/predict")


class ModelServer(ThreadingHTTPServer):
    """A threaded HTTP server holding one model in eval mode and the lock around its calls."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: nn.Module, output: str):
        self.model, self.output, self.lock = model.eval(), output, threading.Lock()
        self.input_kind = getattr(model, "input_kind", "image")
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:
        """Quiet about clients that went away (timeouts, Ctrl-C); the default traceback for anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        """``http://HOST:PORT/predict`` as bound (the real port when 0 was asked)."""
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/predict"

    def predict(self, inputs: object) -> dict:
        """The JSON answer for one request's ``inputs`` (BadInput for inputs the model cannot take)."""
        x = self._tensor(inputs)
        with self.lock, torch.no_grad():
            try:
                out = self.model(x.to(_device(self.model)))
            except (RuntimeError, ValueError, TypeError, IndexError) as e:
                raise BadInput(f"the model cannot take inputs of shape {list(x.shape)} ({first_line(e, 120)})") from None
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise BadInput("the model does not return (N, C) class scores for these inputs")
        out = out.float().cpu()
        if self.output == "labels":
            return {"labels": out.argmax(1).tolist()}
        return {self.output: (out.softmax(1) if self.output == "probs" else out).tolist()}

    def _tensor(self, inputs: object) -> torch.Tensor:
        """``inputs`` as float32 (images) or int64 token ids (text), with a non-empty batch dimension."""
        if not isinstance(inputs, list) or not inputs:
            raise BadInput('expected {"inputs": [...]} with at least one input')
        try:
            t = torch.tensor(inputs, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise BadInput("inputs are ragged or not numbers") from None
        if not torch.isfinite(t).all():
            raise BadInput("inputs contain NaN or inf")
        if self.input_kind != "text":
            return t.float()
        if (t != t.round()).any() or (t < 0).any():
            raise BadInput("token ids must be non-negative integers")
        return t.long()


class _ModelServer6(ModelServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """POST /predict -> the model's answer; JSON errors with 400 / 404 / 411 / 413."""

    server: ModelServer
    server_version = "mgmp-serve"

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] not in PATHS:
            return self._reply(404, {"error": f"unknown path {self.path}; POST to /predict"})
        length = self._length()
        if length is None:
            return None
        try:
            request = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            return self._reply(400, {"error": "the request body is not JSON"})
        if not isinstance(request, dict) or "inputs" not in request:
            return self._reply(400, {"error": 'expected a JSON object {"inputs": [...]}'})
        try:
            return self._reply(200, self.server.predict(request["inputs"]))
        except BadInput as e:
            return self._reply(400, {"error": first_line(e)})

    def do_GET(self) -> None:
        """What the endpoint answers, for a quick check by hand."""
        if self.path.split("?", 1)[0] not in PATHS:
            return self._reply(404, {"error": f"unknown path {self.path}"})
        return self._reply(200, {"output": self.server.output, "input_kind": self.server.input_kind,
                                 "usage": 'POST {"inputs": [...]} to /predict'})

    def _length(self) -> int | None:
        """The request's Content-Length, or None after answering 411 / 400 / 413."""
        header = self.headers.get("Content-Length")
        if header is None:
            self._reply(411, {"error": "Content-Length is required"})
            return None
        try:
            length = int(header)
        except ValueError:
            length = -1
        if length < 0:
            self._reply(400, {"error": f"bad Content-Length {header!r}"})
            return None
        if length > MAX_BODY:
            self._reply(413, {"error": f"request body of {length} bytes exceeds {MAX_BODY >> 20} MiB; send fewer inputs"})
            return None
        return length

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """Quiet: no line per request on stderr."""


def _device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def serve_model(model: nn.Module, host: str = "127.0.0.1", port: int = 0, labels_only: bool = False,
                output: str = "probs") -> ModelServer:
    """A server for ``model`` bound to ``host:port`` (0: a free port), created but not yet serving."""
    if output not in OUTPUTS:
        raise BadInput(f"--output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if not 0 <= port <= 65535:
        raise BadInput(f"--port must be in 0..65535, got {port}")
    cls = _ModelServer6 if ":" in host else ModelServer
    try:
        return cls((host, port), model, "labels" if labels_only else output)
    except OSError as e:
        raise BadInput(f"cannot listen on {host}:{port} ({e.strerror or first_line(e)})") from None


def serve_until_interrupted(server: ModelServer) -> None:
    """Serve until KeyboardInterrupt (Ctrl-C), then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
