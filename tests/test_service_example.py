"""The HTTP service of examples/recommendation_service.py: answers, and 4xx for bad requests."""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import skrec
from skrec import AERecommender, SeqRecommender
from skrec.datasets import make_interactions
from skrec.preprocessing import InteractionEncoder

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "recommendation_service.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("recommendation_service", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def served(example):
    X = make_interactions(n_users=80, n_items=25, mean_length=8, random_state=0)
    model = SeqRecommender(d_model=8, n_layers=1, d_ff=16, max_len=6, max_iter=1,
                           random_state=0, device="cpu", precision="fp32").fit(X)
    encoder = InteractionEncoder().fit({"user": np.zeros(25, dtype=np.int64),
                                        "item": np.array([f"m{i:02d}" for i in range(25)])})
    buffers = []
    for obj in (model, encoder):  # served from what skrec.save wrote, as in production
        buf = io.BytesIO()
        skrec.save(obj, buf)
        buffers.append(io.BytesIO(buf.getvalue()))
    service = example.load_service(*buffers)
    server = example.make_server(service, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield model, service, server.server_address[1]
    server.shutdown()
    server.server_close()


def _post(port, body, path="/recommend"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=raw)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _raw(port, data: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        head = sock.recv(4096)
    return int(head.split(b" ", 2)[1])


def _answer(port, data: bytes, source: str = "127.0.0.1", method: str = "GET"):
    """Send raw bytes from ``source``; return (status, headers, body bytes) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as sock:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


@contextlib.contextmanager
def _serving(example, service, **kwargs):
    server = example.make_server(service, port=0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _second_loopback_address() -> str:
    """127.0.0.2 (another client address on the loopback interface), or skip."""
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address here")
    return "127.0.0.2"


def test_answers_match_the_model(served):
    model, service, port = served
    history = [3, 7, 3, 11]  # a repeat: the item counts at its last position
    status, answer = _post(port, {"items": history, "k": 5})
    assert status == 200
    row = sp.csr_matrix(([3.0, 2.0, 4.0], ([0, 0, 0], [3, 7, 11])), shape=(1, 25))
    ids, scores = model.recommend(row, k=5)
    assert answer["items"] == ids[0].tolist()
    assert np.allclose(answer["scores"], scores[0])
    assert answer["item_ids"] == [f"m{i:02d}" for i in ids[0]]
    status, by_ids = _post(port, {"item_ids": ["m03", "m07", "m03", "m11"], "k": 5})
    assert status == 200 and by_ids == answer
    status, cold = _post(port, {"items": [], "k": 3})
    assert status == 200 and cold["items"] == model.predict(sp.csr_matrix((1, 25)), k=3)[0].tolist()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/health")
    resp = conn.getresponse()
    info = json.loads(resp.read())
    assert resp.status == 200 and info["max_history"] == 6 and info["n_items"] == 25


@pytest.mark.parametrize("body, status", [
    (b"{not json", 400),
    (b"[" * 50000 + b"]" * 50000, 413),
    (b"[" * 20000 + b"]" * 20000, 400),
    ([1, 2], 400),
    ({"items": [1], "extra": 1}, 400),
    ({"k": 3}, 400),
    ({"items": [1], "item_ids": ["m01"]}, 400),
    ({"items": [25]}, 400),
    ({"items": [-1]}, 400),
    ({"items": [10**40]}, 400),
    ({"items": ["1"]}, 400),
    ({"items": [True]}, 400),
    ({"items": 5}, 400),
    ({"item_ids": ["nope"]}, 400),
    ({"item_ids": [1]}, 400),
    ({"item_ids": [None]}, 400),
    ({"items": [1], "k": 0}, 400),
    ({"items": [1], "k": 26}, 400),
    ({"items": [1], "k": 1.5}, 400),
    ({"items": [1], "k": "3"}, 400),
    ({"items": [1], "filter_seen": 1}, 400),
    ({"items": [1] * 7}, 400),
    (b'{"items": [1], "k": NaN}', 400),
])
def test_malformed_requests_get_a_4xx_with_a_message(served, body, status):
    _, _, port = served
    got, answer = _post(port, body)
    assert got == status and answer["error"]
    assert _post(port, {"items": [1]})[0] == 200  # still serving


def test_bad_headers_paths_and_methods(served):
    _, _, port = served
    assert _raw(port, b"POST /recommend HTTP/1.1\r\nHost: x\r\n\r\n") == 411
    assert _raw(port, b"POST /recommend HTTP/1.1\r\nContent-Length: -5\r\n\r\n") == 400
    assert _raw(port, b"POST /recommend HTTP/1.1\r\nContent-Length: x\r\n\r\n") == 400
    assert _raw(port, b"DELETE /recommend HTTP/1.1\r\n\r\n") == 405
    assert _raw(port, b"GARBAGE\r\n\r\n") == 400
    assert _post(port, {"items": [1]}, path="/admin")[0] == 404
    assert _post(port, {"items": [1]})[0] == 200


@pytest.mark.slow
def test_onnx_backend_answers_as_the_eager_one(example):
    """(The graph itself is checked for both model families in test_serving.py.)"""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    X = make_interactions(n_users=80, n_items=25, mean_length=8, random_state=0)
    model = SeqRecommender(d_model=8, n_layers=1, d_ff=16, max_len=6, max_iter=1,
                           random_state=0, device="cpu", precision="fp32").fit(X)
    eager = example.RecommendationService(model)
    onnx = example.RecommendationService(model, backend="onnx")
    assert onnx.info()["backend"] == "onnx"
    for request in ({"items": [3, 7, 3, 11], "k": 5}, {"items": [], "k": 4},
                    {"items": [1, 2, 3, 4, 5, 6], "k": 25, "filter_seen": False},
                    {"items": [9], "k": 24}):
        a, b = eager.recommend(request), onnx.recommend(request)
        assert a["items"] == b["items"], request
        assert np.allclose(a["scores"], b["scores"], atol=1e-4)
    with pytest.raises(example.RequestError):
        onnx.recommend({"items": [0] * (onnx.max_history + 1)})


def test_connections_beyond_the_limit_get_a_503_and_the_service_recovers(example, served):
    _, service, _ = served
    server = example.make_server(service, port=0, max_connections=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        time.sleep(0.2)  # both are being served (waiting for their requests)
        assert _raw(port, b"GET /health HTTP/1.1\r\n\r\n") == 503
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 10
        while _raw(port, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n") != 200:
            assert time.monotonic() < deadline, "the slots were not released"
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()


def test_service_rejects_an_encoder_of_another_catalogue(example):
    X = make_interactions(n_users=40, n_items=10, random_state=0)
    model = AERecommender(latent_dim=4, max_iter=1, random_state=0, device="cpu").fit(X)
    encoder = InteractionEncoder().fit({"user": np.zeros(3), "item": np.arange(3)})
    with pytest.raises(ValueError, match="not saved together"):
        example.RecommendationService(model, encoder)
    assert example.RecommendationService(model).max_history == 10  # a set model: n_items


# ---------------------------------------------------------------- every method, in JSON
@pytest.mark.parametrize("path", ["/recommend", "/health"])
@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "PATCH",
                                    "CONNECT", "PROPFIND", "BREW", "get"])
def test_every_method_it_does_not_serve_gets_a_json_405(served, method, path):
    _, _, port = served
    status, headers, body = _answer(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
                                          f"Content-Length: 2\r\n\r\n{{}}".encode(),
                                    method=method)
    assert status == 405 and headers["content-type"] == "application/json"
    assert headers["allow"] == "GET, POST" and headers["connection"] == "close"
    if method == "HEAD":  # headers only, as HTTP wants
        assert body == b"" and int(headers["content-length"]) > 0
    else:
        answer = json.loads(body)
        assert answer["status"] == 405 and method in answer["error"]
    assert _post(port, {"items": [1]})[0] == 200


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /health HTTP/1.x\r\n\r\n", 400),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /health HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431),
])
def test_errors_found_by_http_server_are_answered_in_json(served, raw, status):
    _, _, port = served
    got, headers, body = _answer(port, raw)
    assert got == status and headers["content-type"] == "application/json"
    assert json.loads(body)["status"] == status


# ---------------------------------------------------------------- ids matched exactly
def test_item_ids_are_matched_exactly_whatever_their_dtype(example, served):
    model, _, _ = served
    ids = np.arange(25, dtype=np.uint64) + np.uint64(2**63)  # beyond int64
    encoder = InteractionEncoder().fit({"user": np.zeros(25, dtype=np.int64), "item": ids})
    service = example.RecommendationService(model, encoder)
    with _serving(example, service) as port:
        status, answer = _post(port, {"item_ids": [2**63 + 3, 2**63 + 7], "k": 3})
        assert status == 200
        assert answer["item_ids"] == [2**63 + i for i in answer["items"]]
        assert answer == _post(port, {"items": [3, 7], "k": 3})[1]
        for bad in ([-1], [2**63 - 1], [2**64 + 3], [3], ["9223372036854775811"]):
            status, answer = _post(port, {"item_ids": bad})
            assert status == 400 and "unknown item ids" in answer["error"], bad
        assert _post(port, {"items": [-1]})[0] == 400


# ---------------------------------------------------------------- slow and numerous clients
def test_a_slow_client_gets_a_408_when_its_request_deadline_passes(example, served):
    _, service, _ = served
    with _serving(example, service, request_timeout=0.6) as port:
        for opening in (b"POST /recommend HTTP/1.1\r\nHost: x\r\nX-Slow: ",  # slow headers
                        b"POST /recommend HTTP/1.1\r\nContent-Length: 50\r\n\r\n{"):  # slow body
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                t0 = time.monotonic()
                sock.sendall(opening)
                answer = b""
                while time.monotonic() - t0 < 5:  # a byte every 0.2 s: each read is quick
                    time.sleep(0.2)
                    try:
                        sock.sendall(b"a")
                        sock.settimeout(0.01)
                        answer = sock.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    finally:
                        sock.settimeout(5)
                    break
                held = time.monotonic() - t0
            assert held < 2.0, held  # the deadline, not the last read, ended it
            assert answer.startswith(b"HTTP/1.1 408") and b'"status": 408' in answer
        # an idle connection is closed without an answer; a busy keep-alive one is not
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            t0 = time.monotonic()
            assert sock.recv(100) == b"" and time.monotonic() - t0 < 2.0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(3):  # 3 x 0.4 s on one connection: the deadline is per request
            conn.request("POST", "/recommend", body=b'{"items": [1]}')
            assert conn.getresponse().read() and time.sleep(0.4) is None
        conn.close()


def test_one_address_cannot_take_more_than_its_share(example, served):
    _, service, _ = served
    other = _second_loopback_address()
    with _serving(example, service, max_connections=8, max_per_client=2) as port:
        held = [socket.create_connection(("127.0.0.1", port), timeout=5,
                                         source_address=(other, 0)) for _ in range(2)]
        time.sleep(0.2)
        status, headers, body = _answer(port, b"GET /health HTTP/1.1\r\n\r\n", source=other)
        assert status == 429 and json.loads(body)["status"] == 429
        assert headers["content-type"] == "application/json"
        assert _post(port, {"items": [1]})[0] == 200  # other addresses are served
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 5
        while _answer(port, b"GET /health HTTP/1.1\r\n\r\n", source=other)[0] != 200:
            assert time.monotonic() < deadline, "the address's slots were not released"
            time.sleep(0.05)


def test_valid_requests_are_served_while_slow_clients_hold_connections(example, served):
    """A small version of benchmarks/service.py's slow-client run."""
    model, service, _ = served
    other = _second_loopback_address()
    with _serving(example, service, max_connections=12, max_per_client=4,
                  request_timeout=1.0) as port:
        slow = []
        for _ in range(10):  # one address, 10 slow clients: 4 held, the rest refused
            sock = socket.create_connection(("127.0.0.1", port), timeout=5,
                                            source_address=(other, 0))
            sock.sendall(b"POST /recommend HTTP/1.1\r\nX-Slow: ")
            slow.append(sock)
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 1.5:  # across the slow clients' deadline
                status, answer = _post(port, {"items": [3, 7], "k": 2})
                assert status == 200 and len(answer["items"]) == 2
                time.sleep(0.05)
            answers = []
            for sock in slow:
                sock.settimeout(2)
                answers.append(sock.recv(4096)[:12])
            assert sorted(answers).count(b"HTTP/1.1 429") == 6
            assert sorted(answers).count(b"HTTP/1.1 408") == 4
        finally:
            for sock in slow:
                sock.close()


# ---------------------------------------------------------------- a model and encoder in one file
def test_a_bundle_file_is_served_and_checked(example, served, tmp_path):
    model, service, _ = served
    path = tmp_path / "service.skrec"
    skrec.save({"model": model, "encoder": service.encoder}, path)
    bundled = example.load_service(path)
    assert bundled.info()["original_ids"] is True
    request = {"item_ids": ["m03", "m07"], "k": 4}
    assert bundled.recommend(request) == service.recommend(request)
    skrec.save({"model": model}, path)
    assert example.load_service(path).info()["original_ids"] is False
    skrec.save({"model": model, "encoder": service.encoder}, path)
    skrec.save(service.encoder, tmp_path / "encoder.skrec")
    with pytest.raises(ValueError, match="holds its encoder already"):
        example.load_service(path, tmp_path / "encoder.skrec")
    skrec.save({"model": model, "extra": service.encoder}, path)
    with pytest.raises(ValueError, match=r"holds 'model' and optionally 'encoder' and "
                                         r"'click'; this one holds \['extra', 'model'\]"):
        example.load_service(path)


@pytest.fixture(scope="module")
def click_served(example, served):
    pd = pytest.importorskip("pandas")
    from skrec import CTRClassifier

    rng = np.random.RandomState(0)
    n = 800
    X = pd.DataFrame({"user": rng.randint(0, 30, n), "city": rng.choice(["a", "b", "c"], n),
                      "ad": rng.randint(0, 20, n), "price": rng.gamma(2.0, 1.0, n),
                      "tags": [list(rng.choice(["x", "y", "z"], rng.randint(0, 3),
                                               replace=False)) for _ in range(n)]})
    y = ((X["user"] + X["ad"]) % 3 == 0).astype(int).to_numpy()
    click = CTRClassifier(max_iter=2, batch_size=128, click_count_buckets=256, min_frequency=1,
                          random_state=0, device="cpu", precision="fp32").fit(X, y)
    model, service, _ = served
    buf = io.BytesIO()
    skrec.save({"model": model, "encoder": service.encoder, "click": click}, buf)
    both = example.load_service(io.BytesIO(buf.getvalue()))
    server = example.make_server(both, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield click, server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_click_endpoint_scores_the_candidates_of_one_request(click_served, served):
    pd = pytest.importorskip("pandas")
    click, port = click_served
    ads = [{"ad": 3, "price": 1.5, "tags": ["x"]}, {"ad": 7, "price": 0.5, "tags": []},
           {"ad": 99, "price": 2.0, "tags": None}]  # an ad never seen in training
    status, answer = _post(port, {"request": {"user": 4, "city": "b"}, "candidates": ads},
                           path="/click")
    assert status == 200
    expected = click.score_candidates({"user": 4, "city": "b"}, pd.DataFrame({
        "ad": [3, 7, 99], "price": [1.5, 0.5, 2.0], "tags": [["x"], [], []]}))
    np.testing.assert_allclose(answer["proba"], expected, rtol=1e-6)
    assert answer["ranking"] == np.argsort(-expected, kind="stable").tolist()
    assert _post(port, {"items": [1]})[0] == 200  # recommendations still served
    # a service without a click model has no /click
    assert _post(served[2], {"request": {}, "candidates": []}, path="/click")[0] == 404


@pytest.mark.parametrize("body", [
    b"{not json",
    [1],
    {"request": {"user": 4, "city": "b"}},
    {"request": {"user": 4, "city": "b"}, "candidates": [], "extra": 1},
    {"request": {"user": 4, "city": "b"}, "candidates": []},
    {"request": {"user": 4, "city": "b"}, "candidates": [{"ad": 1}] * 10_001},
    {"request": {"user": 4}, "candidates": [{"ad": 1, "price": 1.0, "tags": []}]},
    {"request": {"user": 4, "city": "b", "zip": 1},
     "candidates": [{"ad": 1, "price": 1.0, "tags": []}]},
    {"request": {"user": 4, "city": "b", "ad": 2},
     "candidates": [{"ad": 1, "price": 1.0, "tags": []}]},
    {"request": {"user": {"id": 4}, "city": "b"},
     "candidates": [{"ad": 1, "price": 1.0, "tags": []}]},
    {"request": {"user": 4, "city": "b"}, "candidates": [{"ad": 1, "price": "high",
                                                          "tags": []}]},
    {"request": {"user": 4, "city": "b"}, "candidates": [{"ad": 1, "price": 1.0,
                                                          "tags": "x"}]},
    {"request": {"user": 4, "city": "b"}, "candidates": [{"ad": 1, "price": 1.0, "tags": []},
                                                         {"ad": 2, "price": 1.0}]},
    {"request": {"user": "4", "city": "b"}, "candidates": [{"ad": 1, "price": 1.0,
                                                            "tags": []}]},
    {"request": [], "candidates": [{"ad": 1, "price": 1.0, "tags": []}]},
])
def test_malformed_click_requests_get_a_400_with_a_message(click_served, body):
    _, port = click_served
    status, answer = _post(port, body, path="/click")
    assert status in (400, 413) and answer["error"]
    ok = {"request": {"user": 4, "city": "b"}, "candidates": [{"ad": 1, "price": 1.0,
                                                               "tags": []}]}
    assert _post(port, ok, path="/click")[0] == 200  # still serving
