"""Black-box suspects behind an HTTP JSON API (``endpoint:URL`` references, SPEC section 11).

The endpoint takes ``POST {"inputs": [...]}`` (nested lists of floats, or token ids) and answers
``{"logits": [[...]]}``, ``{"probs": [[...]]}`` or ``{"labels": [...]}``. :class:`EndpointModel` makes
it look like a classifier returning class scores, counts the input rows it sends (``queries``), honours
a query budget and a timeout, and turns every failure into one-line :class:`BadInput` naming the URL.
"""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from urllib.parse import urlsplit

import torch
from torch import nn

from model_pool.errors import BadInput, first_line

PREFIX = "endpoint:"
KINDS = ("logits", "probs", "labels")
PROB_FLOOR = 1e-12  # log(0) would be -inf; this keeps argmax and softmax of real probabilities
PROB_SLACK = 1e-4  # rounding in the server's JSON
MAX_ANSWER_BYTES = 256 << 20
MAX_REQUEST_BYTES = 64 << 20  # what `mgmp serve` accepts (model_pool.serve.MAX_BODY)
READ_CHUNK = 1 << 16


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answered as HTTP errors: a suspect's URL names the one server that is queried."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def check_url(url: str) -> str:
    """The URL itself when it is http(s) with a host; BadInput otherwise (no file:, ftp:, ... through urllib)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput(f"endpoint {url!r}: expected an http:// or https:// URL with a host")
    return url


def parse_endpoint_ref(ref: str) -> str | None:
    """The URL of an ``endpoint:URL`` suspect reference; None for any other reference."""
    if not ref.startswith(PREFIX):
        return None
    return check_url(ref[len(PREFIX):])


class EndpointModel(nn.Module):
    """A suspect reachable only as an HTTP JSON API: ``forward(x)`` returns (N, C) float32 class scores."""

    white_box = False

    def __init__(self, url: str, timeout: float = 30.0, max_queries: int | None = None,
                 batch_size: int = 256, num_classes: int | None = None):
        super().__init__()
        self.url = check_url(url)
        if not timeout > 0:
            raise BadInput(f"--timeout must be positive, got {timeout}")
        if max_queries is not None and max_queries < 0:
            raise BadInput(f"--max-queries must be >= 0, got {max_queries}")
        if batch_size < 1:
            raise BadInput(f"endpoint batch size must be >= 1, got {batch_size}")
        if num_classes is not None and num_classes < 1:
            raise BadInput(f"num_classes must be >= 1, got {num_classes}")
        self.timeout, self.max_queries, self.batch_size = float(timeout), max_queries, batch_size
        self.num_classes = num_classes
        self.queries = 0
        self.output_kind: str | None = None

    @property
    def labels_only(self) -> bool:
        """True once the endpoint has answered hard labels only (methods needing scores must refuse)."""
        return self.output_kind == "labels"

    def extra_repr(self) -> str:
        return f"url={self.url!r}, queries={self.queries}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores for ``x``: one request per ``batch_size`` rows, never differentiable."""
        with torch.no_grad():
            device, x = x.device, x.detach().cpu()
            if x.ndim == 0:
                raise BadInput(f"{self.url}: inputs must have a batch dimension")
            self._check_budget(len(x))
            if len(x) == 0:
                return torch.zeros(0, self.num_classes or 0, device=device)
            return torch.cat([self._query_chunk(chunk) for chunk in x.split(self.batch_size)]).to(device)

    def _check_budget(self, n: int) -> None:
        """Refuse, before anything is sent, a forward that would exceed ``max_queries``."""
        if self.max_queries is not None and self.queries + n > self.max_queries:
            raise BadInput(f"{self.url}: the query budget of {self.max_queries} inputs is spent "
                           f"({self.queries} used, {n} more asked; --max-queries)")

    def _query_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        """POST one chunk (halved while its body exceeds MAX_REQUEST_BYTES) and convert the answer to scores."""
        body = self._encode(chunk)
        if len(body) > MAX_REQUEST_BYTES and len(chunk) > 1:
            return torch.cat([self._query_chunk(half) for half in chunk.split((len(chunk) + 1) // 2)])
        answer = self._post(body, len(chunk))
        kind, values = self._pick_kind(answer)
        scores = self._to_scores(kind, values, len(chunk))
        self.output_kind = self.output_kind or kind
        return scores

    def _encode(self, chunk: torch.Tensor) -> bytes:
        """The request body ``{"inputs": chunk}`` (floats for images, ints for token ids)."""
        try:
            return json.dumps({"inputs": chunk.tolist()}, allow_nan=False).encode()
        except ValueError:
            raise BadInput(f"{self.url}: the inputs contain NaN or inf; not sent") from None

    def _post(self, body: bytes, rows: int) -> object:
        """Send ``body``, count its ``rows`` as spent once the server may have seen them, and parse the JSON answer."""
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
        deadline = time.monotonic() + self.timeout
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                self.queries += rows
                raw = self._read(response, deadline)
        except urllib.error.HTTPError as e:
            self.queries += rows
            raise BadInput(f"{self.url}: HTTP {e.code} {e.reason}{_error_detail(e)}") from None
        except urllib.error.URLError as e:
            raise self._connection_error(e.reason) from None
        except (TimeoutError, socket.timeout):
            self.queries += rows  # sent; the answer did not come in time
            raise self._timeout() from None
        except (HTTPException, OSError) as e:
            self.queries += rows
            raise BadInput(f"{self.url}: the connection failed ({first_line(e, 120)})") from None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadInput(f"{self.url}: the answer is not JSON ({first_line(e, 80)})") from None

    def _read(self, response, deadline: float) -> bytes:
        """The answer's body, within the overall deadline and ``MAX_ANSWER_BYTES``."""
        parts, size = [], 0
        while chunk := response.read(READ_CHUNK):
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise BadInput(f"{self.url}: the answer is larger than {MAX_ANSWER_BYTES >> 20} MiB")
            if time.monotonic() > deadline:
                raise self._timeout()
        return b"".join(parts)

    def _timeout(self) -> BadInput:
        return BadInput(f"{self.url}: no answer within {self.timeout:g} s (--timeout)")

    def _connection_error(self, reason: object) -> BadInput:
        """One line for a request that never reached the server (or got no answer in time)."""
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return self._timeout()
        if isinstance(reason, ConnectionRefusedError):
            return BadInput(f"{self.url}: connection refused (is the endpoint running?)")
        return BadInput(f"{self.url}: unreachable ({first_line(str(reason), 120)})")

    def _pick_kind(self, answer: object) -> tuple[str, object]:
        """The answer's kind (logits, probs or labels) and its values; the kind may not change between requests."""
        found = [k for k in KINDS if isinstance(answer, dict) and k in answer]
        if not found:
            keys = ", ".join(map(repr, list(answer)[:5])) if isinstance(answer, dict) else type(answer).__name__
            raise BadInput(f"{self.url}: the answer has none of 'logits', 'probs', 'labels' (got {keys or 'no keys'})")
        kind = found[0]
        if self.output_kind is not None and kind != self.output_kind:
            raise BadInput(f"{self.url}: the endpoint answered {kind} after answering {self.output_kind}")
        return kind, answer[kind]

    def _to_scores(self, kind: str, values: object, rows: int) -> torch.Tensor:
        """(rows, C) float32 scores: logits as given, log-probabilities for probs, log one-hot for labels."""
        t = self._numeric(kind, values)
        if kind == "labels":
            return self._labels_to_scores(t, rows)
        if t.ndim != 2 or len(t) != rows or t.shape[1] < 1:
            raise BadInput(f"{self.url}: {kind} of shape {list(t.shape)} for {rows} inputs, expected [{rows}, C]")
        if self.num_classes is not None and t.shape[1] != self.num_classes:
            raise BadInput(f"{self.url}: {t.shape[1]} classes answered, expected {self.num_classes}")
        self.num_classes = self.num_classes or t.shape[1]
        if kind == "probs":
            if (t < -PROB_SLACK).any() or (t > 1 + PROB_SLACK).any():
                raise BadInput(f"{self.url}: probabilities outside [0, 1]")
            t = t.clamp(min=PROB_FLOOR).log()
        return t.float()

    def _numeric(self, kind: str, values: object) -> torch.Tensor:
        """The answer's values as a finite float64 tensor (BadInput for ragged, non-numeric or NaN/inf values)."""
        if not isinstance(values, list):
            raise BadInput(f"{self.url}: {kind} must be a list, got {type(values).__name__}")
        try:
            t = torch.tensor(values, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise BadInput(f"{self.url}: {kind} are ragged or not numbers") from None
        if not torch.isfinite(t).all():
            raise BadInput(f"{self.url}: {kind} contain NaN or inf")
        return t

    def _labels_to_scores(self, t: torch.Tensor, rows: int) -> torch.Tensor:
        """Hard labels as log one-hot rows (0 for the label, log(PROB_FLOOR) elsewhere): argmax is the label."""
        if t.ndim != 1 or len(t) != rows:
            raise BadInput(f"{self.url}: labels of shape {list(t.shape)} for {rows} inputs, expected [{rows}]")
        if self.num_classes is None:
            raise BadInput(f"{self.url}: the endpoint answers labels only; give num_classes to use it")
        if (t != t.round()).any() or (t < 0).any() or (t >= self.num_classes).any():
            raise BadInput(f"{self.url}: labels must be integers in [0, {self.num_classes})")
        one_hot = torch.nn.functional.one_hot(t.long(), self.num_classes).float()
        return one_hot.clamp(min=PROB_FLOOR).log()


def _error_detail(e: urllib.error.HTTPError) -> str:
    """``: message`` from an error answer's ``{"error": ...}`` body, when it has one."""
    try:
        message = json.loads(e.read(4096) or b"{}").get("error")
    except (ValueError, AttributeError, OSError, HTTPException):
        return ""
    return f": {first_line(str(message), 160)}" if message else ""
