"""
A recommendation service over HTTP
==================================

A small HTTP service, with the standard library only, that loads a model saved with
:func:`skrec.save` -- best in one file with the :class:`~skrec.preprocessing.InteractionEncoder`
that maps item indices to your ids (``skrec.save({"model": model, "encoder": encoder},
"service.skrec")``) -- and answers "the top-k items for this history" in JSON.

Run it on a saved bundle (it listens on the loopback interface only)::

    python examples/recommendation_service.py --model service.skrec --port 8000

(a model file and its encoder's file work too: ``--model model.skrec --encoder
encoder.skrec``; the pair must have the same items).

and ask it::

    curl -s localhost:8000/recommend -d '{"items": [49, 97, 180], "k": 5}'
    curl -s localhost:8000/recommend -d '{"item_ids": [50, 98, 181], "k": 5}'
    curl -s localhost:8000/health

A request is a JSON object: ``items`` (item indices, oldest first) or ``item_ids`` (your ids,
when an encoder was loaded), ``k`` (default 10) and ``filter_seen`` (default true). The answer
holds ``items`` (indices, best first), ``scores`` and, with an encoder, ``item_ids``. A
malformed request -- bad JSON, unknown fields or item ids, ``k`` out of range, a history longer
than the model reads (``max_len``), a body over 64 KiB, a method other than GET and POST --
gets a 4xx status and a JSON message, and the service keeps serving. Item ids are matched
exactly, whatever the dtype of the encoder's ids (uint64 ids beyond 2**63 included).

Slow and numerous clients: a client has 10 s to send a whole request (not 10 s per read: a
client trickling a byte every few seconds is answered 408 and cut off), an idle keep-alive
connection is closed after as long, one client address holds at most 64 connections (then
429) and the server 256 (then 503). ``benchmarks/service.py`` measures it under load, with and
without 70 slow clients connected.

``--backend onnx`` serves the model's scoring graph exported to ONNX (see
:mod:`skrec.serving`) with ONNX Runtime instead of PyTorch (``pip install "skrec[onnx]"``).

**Click prediction for ads.** A bundle may also hold ``"click"``: a
:class:`~skrec.CTRClassifier` fitted on a DataFrame. The service then answers ``POST /click``:
the click probabilities of the candidate ads of one request, scored in one batched call
(:meth:`~skrec.CTRClassifier.score_candidates`)::

    curl -s localhost:8000/click -d '{"request": {"user": 12, "city": "paris"},
                                      "candidates": [{"ad": 7}, {"ad": 9}, {"ad": 31}]}'

``request`` holds the request's fields (user, context), ``candidates`` one object per ad with
the other fields (at most 10,000); together they give every column the model was fitted on.
The answer holds ``proba`` (one per candidate, in order) and ``ranking`` (candidate
positions, most probable click first). Unknown categories are served (the model's unknown
vector); a missing or extra column, a value that cannot be a category, a malformed body get a
400 and a JSON message.

Run without ``--model``, the script trains a model on MovieLens 100K (synthetic data when it is
absent), saves it with its encoder with :func:`skrec.save`, loads them back as a service
would, starts the service on a free port in a thread, sends it a few requests and stops it.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

import skrec

HOST = "127.0.0.1"  # loopback only: this example never listens on a public interface
MAX_BODY_BYTES = 64 * 1024
MAX_K = 1000
#: History limit of models that read whole item sets (a sequence model reads ``max_len``).
MAX_SET_SIZE = 10_000
FIELDS = {"items", "item_ids", "k", "filter_seen"}


class RequestError(Exception):
    """A request the service refuses, with its HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


MAX_CANDIDATES = 10_000
CLICK_FIELDS = {"request", "candidates"}


def _scalar(value) -> bool:
    """A JSON value a field may hold: a string, a number or null (not a bool: ambiguous)."""
    return value is None or isinstance(value, str | float) or (
        isinstance(value, int) and not isinstance(value, bool))


class ClickService:
    """Validates click requests and scores their candidates with a loaded CTRClassifier.

    Parameters
    ----------
    model : CTRClassifier
        Fitted on a DataFrame (its columns are the request's and candidates' fields).
    """

    def __init__(self, model):
        names = getattr(model, "feature_names_in_", None)
        if not hasattr(model, "score_candidates") or names is None:
            raise ValueError("the 'click' model must be a CTRClassifier fitted on a DataFrame "
                             "(its columns name the fields of the requests).")
        self.model = model
        self.columns = [str(c) for c in names]
        self.multi = {f["column"] for f in model.encoder_.fields_ if f["kind"] == "multi"}
        self.numeric = {f["column"] for f in model.encoder_.fields_ if f["kind"] == "numeric"}

    def info(self) -> dict:
        return {"model": type(self.model).__name__, "fields": self.columns,
                "max_candidates": MAX_CANDIDATES}

    def _value(self, column: str, value, where: str):
        if column in self.multi:
            if value is None:
                return []
            if not isinstance(value, list) or not all(_scalar(v) for v in value):
                raise RequestError(400, f"{where}: the multi-valued field {column!r} takes a "
                                        "list of strings or numbers")
            return value
        if not _scalar(value):
            raise RequestError(400, f"{where}: field {column!r} takes a string, a number or "
                                    "null")
        if column in self.numeric and isinstance(value, str):
            raise RequestError(400, f"{where}: the numeric field {column!r} takes a number")
        return value

    def score(self, payload) -> dict:
        import pandas as pd

        if not isinstance(payload, dict):
            raise RequestError(400, "the body must be a JSON object")
        unknown = set(payload) - CLICK_FIELDS
        if unknown or not CLICK_FIELDS <= set(payload):
            raise RequestError(400, f"a click request holds exactly {sorted(CLICK_FIELDS)}")
        request, candidates = payload["request"], payload["candidates"]
        if not isinstance(request, dict):
            raise RequestError(400, "'request' must be an object of fields")
        if not isinstance(candidates, list) or not all(isinstance(c, dict)
                                                       for c in candidates):
            raise RequestError(400, "'candidates' must be a list of objects")
        if not 1 <= len(candidates) <= MAX_CANDIDATES:
            raise RequestError(400, f"give 1 to {MAX_CANDIDATES} candidates")
        keys = list(candidates[0])
        if any(list(c) != keys and set(c) != set(keys) for c in candidates):
            raise RequestError(400, "every candidate must have the same fields")
        given = list(request) + keys
        wrong = sorted(set(given) - set(self.columns)) + sorted(set(request) & set(keys))
        missing = sorted(set(self.columns) - set(given))
        if wrong or missing:
            raise RequestError(400, f"the request and the candidates must give each of "
                                    f"{self.columns} once (unknown or repeated: {wrong}; "
                                    f"missing: {missing})")
        req = {k: self._value(k, v, "request") for k, v in request.items()}
        columns = {k: [self._value(k, c[k], f"candidate {i}") for i, c in
                       enumerate(candidates)] for k in keys}
        frame = pd.DataFrame({k: pd.Series(v, dtype=object if k in self.multi else None)
                              for k, v in columns.items()})
        try:
            proba = self.model.score_candidates(req, frame)
        except (ValueError, TypeError) as exc:  # the encoder names the field
            raise RequestError(400, str(exc)) from None
        return {"proba": proba.tolist(),
                "ranking": np.argsort(-proba, kind="stable").tolist()}


class RecommendationService:
    """Validates requests and answers them with a loaded skrec model (thread-safe).

    Parameters
    ----------
    model : skrec estimator
        A fitted recommender, e.g. from :func:`skrec.load`.
    encoder : InteractionEncoder, default=None
        Maps item indices to original ids (``item_ids`` in requests and answers).
    backend : {"eager", "onnx"}, default="eager"
        ``"eager"``: the model's own ``recommend``. ``"onnx"``: its scoring graph exported
        with :func:`skrec.serving.export_onnx` at start-up and run by ONNX Runtime (a
        ``SeqRecommender`` or ``AERecommender``; needs ``pip install "skrec[onnx]"``).
    click : CTRClassifier, default=None
        A click model served at ``POST /click`` (see :class:`ClickService`).
    """

    def __init__(self, model, encoder=None, backend: str = "eager", click=None):
        self.model = model
        self.encoder = encoder
        self.click = None if click is None else ClickService(click)
        self.n_items = int(model.n_features_in_)
        self.max_k = min(MAX_K, self.n_items)
        max_len = getattr(model, "max_len", None)
        self.max_history = int(max_len) if max_len else min(self.n_items, MAX_SET_SIZE)
        if encoder is not None and encoder.n_items_ != self.n_items:
            raise ValueError(f"the encoder knows {encoder.n_items_} items, the model "
                             f"{self.n_items}: they were not saved together (save both in one "
                             "file: skrec.save({'encoder': encoder, 'model': model}, path)).")
        if backend not in ("eager", "onnx"):
            raise ValueError(f"backend must be 'eager' or 'onnx'; got {backend!r}.")
        self.backend = backend
        self._session = self._onnx_session() if backend == "onnx" else None
        self.recommend({"items": [0], "k": 1})  # warm-up: the first call builds caches

    def _onnx_session(self):
        import onnxruntime as ort

        from skrec.serving import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(self.model, path, k=self.max_k)  # the largest k; answers are cut
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            return ort.InferenceSession(str(path), options)

    def info(self) -> dict:
        return {"status": "ok", "model": type(self.model).__name__, "n_items": self.n_items,
                "max_history": self.max_history, "max_k": self.max_k,
                "original_ids": self.encoder is not None, "backend": self.backend,
                "click": None if self.click is None else self.click.info()}

    def _history(self, payload: dict) -> np.ndarray:
        if ("items" in payload) == ("item_ids" in payload):
            raise RequestError(400, "give the history as exactly one of 'items' (item indices) "
                                    "or 'item_ids' (original ids)")
        key = "items" if "items" in payload else "item_ids"
        values = payload[key]
        if not isinstance(values, list):
            raise RequestError(400, f"'{key}' must be a list")
        if len(values) > self.max_history:
            raise RequestError(400, f"the history has {len(values)} items; this model reads at "
                                    f"most {self.max_history} (send the latest ones)")
        if key == "item_ids":
            if self.encoder is None:
                raise RequestError(400, "this service has no encoder: send 'items' (indices)")
            if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
                raise RequestError(400, "'item_ids' must hold strings or integers")
            ids = np.empty(len(values), dtype=object)  # Python ints and strings: the encoder
            ids[:] = values  # matches them exactly, whatever the dtype of its ids
            items = self.encoder.transform_items(ids, handle_unknown="ignore")
            unknown = [v for v, i in zip(values, items.tolist()) if i < 0]
            if unknown:
                raise RequestError(400, f"unknown item ids: {unknown[:10]}")
            return items
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise RequestError(400, "'items' must hold integer item indices")
        bad = [v for v in values if not 0 <= v < self.n_items]
        if bad:
            raise RequestError(400, f"unknown item indices (valid: 0..{self.n_items - 1}): "
                                    f"{bad[:10]}")
        return np.asarray(values, dtype=np.int64)

    @staticmethod
    def _last_positions(items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The distinct items and the position (1 = oldest) of each one's last occurrence."""
        uniq, first_from_end = np.unique(items[::-1], return_index=True)
        return uniq, items.size - first_from_end

    def _row(self, items: np.ndarray) -> sp.csr_matrix:
        """One user's row: each item's value is its last position in the history."""
        uniq, order = self._last_positions(items)
        return sp.csr_matrix((order.astype(np.float64), (np.zeros(uniq.size, dtype=np.int64),
                                                         uniq)), shape=(1, self.n_items))

    def _onnx_recommend(self, items: np.ndarray, k: int, filter_seen: bool):
        """The graph's inputs for one user, as ``skrec.serving.graph_inputs`` builds them."""
        uniq, order = self._last_positions(items)
        history = uniq[np.argsort(order)][-self.max_history:]  # oldest first, each item once
        none = np.full(1, -1, dtype=np.int64)
        feeds = {"history": (history if history.size else none)[None],
                 "exclude": (uniq if filter_seen and uniq.size else none)[None]}
        ids, scores = self._session.run(None, feeds)
        return ids[0, :k], scores[0, :k]

    def recommend(self, payload) -> dict:
        if not isinstance(payload, dict):
            raise RequestError(400, "the body must be a JSON object")
        unknown = set(payload) - FIELDS
        if unknown:
            raise RequestError(400, f"unknown fields: {sorted(unknown)}; allowed: {sorted(FIELDS)}")
        k = payload.get("k", 10)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_k:
            raise RequestError(400, f"'k' must be an integer in [1, {self.max_k}]")
        filter_seen = payload.get("filter_seen", True)
        if not isinstance(filter_seen, bool):
            raise RequestError(400, "'filter_seen' must be true or false")
        items = self._history(payload)
        if self._session is not None:
            ids, scores = self._onnx_recommend(items, k, filter_seen)
        else:
            ids, scores = self.model.recommend(self._row(items), k=k, filter_seen=filter_seen)
            ids, scores = ids[0], scores[0]
        keep = ids >= 0
        out = {"items": ids[keep].tolist(), "scores": scores[keep].tolist()}
        if self.encoder is not None:
            out["item_ids"] = self.encoder.inverse_transform_items(ids[keep]).tolist()
        return out


class _RequestInput(io.RawIOBase):
    """A connection's input with one deadline for the whole request (request line, headers
    and body), not one per read: a client sending a byte every few seconds would otherwise
    hold its connection, and a thread, for as long as it likes."""

    def __init__(self, sock):
        self.sock = sock
        self.deadline = math.inf
        self.received = 0  # bytes of the current request so far
        self.expired = False

    def start(self, seconds: float) -> None:
        self.deadline, self.received, self.expired = time.monotonic() + seconds, 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError("the request deadline passed")
            self.sock.settimeout(left)
            n = self.sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            raise
        self.received += n
        return n


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; JSON in and out; every failure is answered, never raised."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # answer a garbled request line with a status line
    server_version = "skrec-example/1"
    #: Seconds a client has to send a whole request, from the time its connection opened or
    #: its previous answer was sent (an idle keep-alive connection is closed after as long).
    request_timeout = 10.0
    timeout = 10  # seconds to write an answer to a client that does not read it
    service: RecommendationService  # set by make_server
    quiet = True

    def log_message(self, fmt, *args):  # noqa: D102 - access log only when asked
        if not self.quiet:
            super().log_message(fmt, *args)

    def setup(self):
        super().setup()
        self.rfile.close()  # replaced by an input with a deadline per request
        self._input = _RequestInput(self.connection)
        self.rfile = io.BufferedReader(self._input)

    def handle_one_request(self):
        self._input.start(self.request_timeout)
        self.command, self.request_version = "", self.default_request_version
        super().handle_one_request()  # closes the connection on a TimeoutError
        if self._input.expired and self._input.received:  # a request came, too slowly
            self._error(408, f"the request was not received within {self.request_timeout:g} s",
                        close=True)

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.connection.settimeout(self.timeout)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":  # an answer to HEAD has headers only
                self.wfile.write(data)
        except OSError:  # the client went away (or does not read): drop the connection
            self.close_connection = True

    def _error(self, status: int, message: str, *, close: bool = False, headers=None) -> None:
        self.close_connection = self.close_connection or close
        self._send(status, {"error": message, "status": status}, headers)

    def send_error(self, code, message=None, explain=None):
        """The errors that http.server finds itself (a garbled request line, headers too long,
        a method without a ``do_`` handler...) are answered in JSON too; an unknown or unserved
        method gets a 405 rather than http.server's 501."""
        headers = None
        if code in (405, 501):
            code, headers = 405, {"Allow": "GET, POST"}
            message = (f"method {self.command!r} is not allowed: GET /health or "
                       "POST /recommend")
        self._error(code, message or self.responses.get(code, ("error",))[0], close=True,
                    headers=headers)

    def do_GET(self):  # noqa: N802 - the http.server API
        if self.path == "/health":
            self._send(200, self.service.info())
        else:
            self._error(404, f"no such path {self.path!r}: POST /recommend or GET /health")

    def do_POST(self):  # noqa: N802
        try:
            routes = {"/recommend": self.service.recommend}
            if self.service.click is not None:
                routes["/click"] = self.service.click.score
            if self.path not in routes:
                # The body is not read: close the connection rather than parse it as a request.
                return self._error(404, f"no such path {self.path!r}: POST "
                                        f"{' or POST '.join(routes)}", close=True)
            length = self.headers.get("Content-Length")
            if length is None:
                return self._error(411, "a Content-Length header is required", close=True)
            try:
                length = int(length)
            except ValueError:
                length = -1
            if length < 0:
                return self._error(400, "invalid Content-Length", close=True)
            if length > MAX_BODY_BYTES:
                return self._error(413, f"the body is larger than {MAX_BODY_BYTES} bytes",
                                   close=True)
            body = self.rfile.read(length)
            if len(body) < length:
                self.close_connection = True  # the client went away mid-body
                return None
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError) as exc:
                return self._error(400, f"the body is not valid JSON ({type(exc).__name__})")
            self._send(200, routes[self.path](payload))
        except RequestError as exc:
            self._error(exc.status, exc.message)
        except TimeoutError:
            raise  # too slow: handle_one_request answers 408 and closes
        except ConnectionError:
            self.close_connection = True
        except Exception as exc:  # a bug must not take the service down: answer 500
            self._error(500, f"internal error: {type(exc).__name__}", close=True)
        return None


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once and ``max_per_client``
    from one client address: beyond, a new connection gets a 503 (the server is full) or a
    429 (that address holds its share) and is closed, so that neither many clients nor one
    greedy client can exhaust the process. Every client has ``request_timeout`` seconds per
    request, so a slot held by a slow client is freed within that time."""

    daemon_threads = True
    request_queue_size = 128  # connections the kernel queues before the server accepts them

    def __init__(self, address, handler, max_connections: int = 256,
                 max_per_client: int = 64):
        super().__init__(address, handler)
        self.max_connections, self.max_per_client = max_connections, max_per_client
        self._lock = threading.Lock()
        self._open: Counter = Counter()  # client address -> open connections

    def process_request(self, request, client_address):
        host = client_address[0]
        with self._lock:
            if self._open[host] >= self.max_per_client:
                refused = (429, f"more than {self.max_per_client} connections from your "
                                "address; close some and retry")
            elif sum(self._open.values()) >= self.max_connections:
                refused = (503, "too many connections, retry later")
            else:
                refused = None
                self._open[host] += 1
        if refused is not None:
            return self._refuse(request, *refused)
        try:
            super().process_request(request, client_address)
        except Exception:
            self._release(host)
            raise
        return None

    def _refuse(self, request, status: int, message: str) -> None:
        body = json.dumps({"error": message, "status": status}).encode()
        reason = {429: "Too Many Requests", 503: "Service Unavailable"}[status]
        try:
            request.settimeout(1.0)
            request.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                            f"Connection: close\r\nRetry-After: 1\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def _release(self, host) -> None:
        with self._lock:
            self._open[host] -= 1
            if self._open[host] <= 0:
                del self._open[host]

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(client_address[0])

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # a client that went away is no news
            super().handle_error(request, client_address)


def make_server(service: RecommendationService, port: int = 0, *, quiet: bool = True,
                max_connections: int = 256, max_per_client: int = 64,
                request_timeout: float = 10.0) -> ThreadingHTTPServer:
    """An HTTP server for ``service`` on 127.0.0.1:``port`` (0: a free port), not started."""
    handler = type("BoundHandler", (Handler,), {"service": service, "quiet": quiet,
                                                 "request_timeout": request_timeout})
    return BoundedServer((HOST, port), handler, max_connections, max_per_client)


def load_service(model_path, encoder_path=None, inference_precision: str | None = None,
                 backend: str = "eager") -> RecommendationService:
    """Load what :func:`skrec.save` wrote and wrap it: a bundle file
    (``{"model": model, "encoder": encoder}``, the encoder optional), or a model file and
    optionally its encoder's file (the pair is checked: same number of items)."""
    loaded = skrec.load(model_path)
    click = None
    if isinstance(loaded, dict):  # a bundle: the model and its encoder, kept together
        unknown = set(loaded) - {"model", "encoder", "click"}
        if "model" not in loaded or unknown:
            raise ValueError(f"a bundle for the service holds 'model' and optionally 'encoder' "
                             f"and 'click'; this one holds {sorted(loaded)}.")
        if encoder_path and "encoder" in loaded:
            raise ValueError("the bundle holds its encoder already: leave out the encoder file.")
        model, encoder, click = loaded["model"], loaded.get("encoder"), loaded.get("click")
    else:
        model, encoder = loaded, None
    if encoder_path:
        encoder = skrec.load(encoder_path)
    if inference_precision is not None:
        model.set_params(inference_precision=inference_precision)
        if click is not None:
            click.set_params(inference_precision=inference_precision)
    return RecommendationService(model, encoder, backend, click)


# --------------------------------------------------------------------------------------------
# The demonstration (no --model): train, save, load, serve, ask, stop.
# --------------------------------------------------------------------------------------------


def _train_and_save(folder: Path, fast: bool) -> Path:
    from skrec import SeqRecommender
    from skrec.datasets import load_movielens, make_interactions
    from skrec.preprocessing import InteractionEncoder

    data_dir = Path(os.environ.get("SKREC_DATA_DIR", Path(__file__).resolve().parents[2]
                                   / "shared" / "data" / "ml-100k"))
    if not (data_dir / "u.data").is_file():
        data_dir = data_dir / "ml-100k"
    if (data_dir / "u.data").is_file():
        data = load_movielens(data_dir)
        X, encoder = data.X, data.encoder
        print(f"MovieLens 100K: {X.shape[0]} users x {X.shape[1]} movies")
    else:
        X = make_interactions(n_users=500, n_items=300, random_state=0)
        encoder = InteractionEncoder().fit({"user": np.zeros(300, dtype=np.int64),
                                            "item": np.arange(1000, 1300)})
        print(f"synthetic data: {X.shape[0]} users x {X.shape[1]} items")
    params = dict(max_iter=1, d_model=32, max_len=50) if fast else dict(max_iter=20)
    model = SeqRecommender(random_state=0, **params).fit(X[:200] if fast else X)
    click = _train_click_model(fast)
    path = folder / "service.skrec"
    # one file: they stay together
    skrec.save({"model": model, "encoder": encoder, "click": click}, path)
    size = path.stat().st_size / 1e6
    print(f"saved the model, its encoder and the click model in {path.name} ({size:.1f} MB)")
    return path


def _train_click_model(fast: bool):
    """A click model on synthetic impressions: user fields C1-C2, the ad's C3-C4 and I1."""
    from skrec import CTRClassifier
    from skrec.datasets import make_ctr

    data = make_ctr(5_000 if fast else 100_000, n_categorical=4, n_numeric=1,
                    max_cardinality=1000, click_rate=0.1, as_frame=True, random_state=0)
    click = CTRClassifier(max_iter=2 if fast else 20, numeric_scaling="log", random_state=0)
    click.fit(data.X, data.y)
    print(f"click model: {len(data.y)} synthetic impressions, fields {list(data.X.columns)}")
    return click


def _ask(url: str, body: bytes | None = None, method: str = "POST") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def demo(fast: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        service = load_service(_train_and_save(Path(tmp), fast))
    server = make_server(service, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://{HOST}:{server.server_address[1]}"
    print(f"serving on {url}\n")
    try:
        status, info = _ask(f"{url}/health", method="GET")
        print(f"GET /health -> {status} {info}")
        ids = service.encoder.items_[:3].tolist()
        requests = [
            ("top-5 for items [0, 1, 2]", {"items": [0, 1, 2], "k": 5}),
            (f"the same by original ids {ids}", {"item_ids": ids, "k": 5}),
            ("a new user (empty history)", {"items": [], "k": 3}),
            ("bad JSON", b"{'items': [1]"),
            ("an unknown item index", {"items": [0, service.n_items]}),
            ("an unknown original id", {"item_ids": ["no such movie"]}),
            ("k out of range", {"items": [0], "k": 0}),
            ("a history longer than max_len", {"items": [0] * (service.max_history + 1)}),
            ("a huge body", b"[" + b"0," * MAX_BODY_BYTES + b"0]"),
        ]
        for label, body in requests:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            t0 = time.perf_counter()
            status, answer = _ask(f"{url}/recommend", raw)
            ms = (time.perf_counter() - t0) * 1e3
            shown = {k: (v[:5] if isinstance(v, list) else v) for k, v in answer.items()}
            print(f"{label:<34} -> {status} in {ms:5.1f} ms: {shown}")
        ads = [{"C3": c3, "C4": c4, "I1": i1} for c3, c4, i1 in
               ((1, 5, 3.0), (2, 9, 0.0), (1, 9, 12.0), (123456, 1, None))]  # an unseen ad
        clicks = [
            ("4 candidate ads of one request", {"request": {"C1": 1, "C2": 4},
                                               "candidates": ads}),
            ("a missing field", {"request": {"C1": 1}, "candidates": ads}),
            ("a value that is no category", {"request": {"C1": {"x": 1}, "C2": 4},
                                            "candidates": ads}),
        ]
        for label, body in clicks:
            status, answer = _ask(f"{url}/click", json.dumps(body).encode())
            print(f"{label:<34} -> {status}: {answer}")
        status, answer = _ask(f"{url}/recommend", method="OPTIONS")
        print(f"{'a method it does not serve':<34} -> {status}: {answer}")
        status, _ = _ask(f"{url}/recommend", json.dumps({"items": [3]}).encode())
        print(f"\nstill serving after the bad requests: {status == 200}")
    finally:
        server.shutdown()
        server.server_close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="skrec recommendation service (loopback only)")
    parser.add_argument("--model", help="a file of skrec.save: a model, or a bundle "
                                        "{'model': ..., 'encoder': ...}")
    parser.add_argument("--encoder", help="the model's InteractionEncoder, saved on its own")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--inference-precision", default=None,
                        choices=["auto", "fp32", "bf16", "fp16", "int8"])
    parser.add_argument("--backend", default="eager", choices=["eager", "onnx"],
                        help="onnx: serve the exported graph with ONNX Runtime")
    parser.add_argument("--log", action="store_true", help="print an access log")
    parser.add_argument("--max-connections", type=int, default=256,
                        help="open connections at most; beyond, new ones get a 503")
    parser.add_argument("--max-per-client", type=int, default=64,
                        help="open connections from one address at most (beyond: a 429); "
                             "behind a local proxy every client has its address")
    parser.add_argument("--request-timeout", type=float, default=10.0,
                        help="seconds a client has to send a whole request")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.model is None:
        demo(fast=os.environ.get("SKREC_EXAMPLES_FAST") == "1")
        return
    service = load_service(args.model, args.encoder, args.inference_precision, args.backend)
    server = make_server(service, args.port, quiet=not args.log,
                         max_connections=args.max_connections,
                         max_per_client=args.max_per_client,
                         request_timeout=args.request_timeout)
    print(f"listening on http://{HOST}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
