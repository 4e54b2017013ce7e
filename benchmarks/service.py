"""The example HTTP service under load on 127.0.0.1: p50/p99 latency, slow clients, a burst of
bad requests, every HTTP method.

Starts ``examples/recommendation_service.py`` in its own process (one torch thread; the
PyTorch ``eager`` backend, then the ``onnx`` one) on a
model saved with :func:`skrec.save` (by default a SeqRecommender with the default
architecture on ML-100K, one epoch: latency does not depend on what was learned), then, from
this process, sends requests at a fixed rate (open loop: request ``i`` is due at
``t0 + i / rate`` whatever the answers) for ``--duration`` seconds per rate. Each request is
the history of a real ML-100K user (the latest ``max_len`` items). Latency counts from the
time a request was due, so a server or client that falls behind shows in the tail.

Slow clients: the same load at ``--slow-rate`` runs in three settings, in turn for
``--slow-rounds`` rounds (so that a change in the machine's load hits them alike): alone, with
``--slow-clients`` (70) slow clients connected from one other loopback address (127.0.0.2),
and with as many from as many addresses (127.0.1.x). A slow client sends a request line, then
one header byte every 2 s; when the server cuts it off it reconnects at once (after a refusal,
429 or 503, it waits 2 s). The valid requests' median p99 with them is compared with the
median p99 alone (goal: at most 2x); how long the server let a slow client hold its
connection, and how its connections ended (408: its deadline passed; 429: its address held
its share), are recorded.

Afterwards a burst of malformed requests (bad JSON, unknown ids, k out of range, histories
longer than ``max_len``, a huge body, bad headers, unserved methods, ...) must all get a 4xx,
every HTTP method on every path must be answered in JSON (a 4xx unless served), and the
service must still answer. Everything is bounded in count and time; only loopback addresses
are used.

Run: ``python benchmarks/service.py [--rates 100 500] [--duration 30] [--backends eager onnx]``.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

import skrec
from _common import markdown_table, ml100k_path, save_json
from skrec import SeqRecommender
from skrec._histories import ordered_sequences
from skrec.datasets import load_movielens, make_interactions

HOST = "127.0.0.1"
SERVICE = Path(__file__).resolve().parents[1] / "examples" / "recommendation_service.py"


def prepare_model(folder: Path, data_arg: str | None):
    """Fit (one epoch) and save a model and its encoder; return paths and the data."""
    path = ml100k_path(data_arg)
    if (path / "u.data").is_file():
        data = load_movielens(path)
        X, encoder, name = data.X, data.encoder, "ML-100K"
    else:
        X, encoder, name = make_interactions(943, 1682, mean_length=100, random_state=0), None, \
            "synthetic 943x1682"
    model = SeqRecommender(max_iter=1, early_stopping=False, random_state=0, device="cpu")
    model.fit(X)
    model_path = folder / "model.skrec"
    skrec.save(model, model_path)
    encoder_path = None
    if encoder is not None:
        encoder_path = folder / "encoder.skrec"
        skrec.save(encoder, encoder_path)
    return model, model_path, encoder_path, X, name


def start_server(model_path: Path, encoder_path: Path | None, precision: str, backend: str):
    cmd = [sys.executable, str(SERVICE), "--model", str(model_path), "--port", "0",
           "--threads", "1", "--inference-precision", precision, "--backend", backend]
    if encoder_path is not None:
        cmd += ["--encoder", str(encoder_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SERVICE.parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.monotonic() + 120
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on" in line or proc.poll() is not None:
            break
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"the service did not start: {line!r} {proc.stderr.read()[-2000:]}")
    port = int(line.rsplit(":", 1)[1])
    return proc, port


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def request_bodies(X, max_len: int, n: int, seed: int = 0) -> list[bytes]:
    seqs = ordered_sequences(X, max_len) - 1
    rng = np.random.RandomState(seed)
    rows = rng.randint(0, X.shape[0], size=n)
    return [json.dumps({"items": [int(i) for i in seqs[r] if i >= 0], "k": 10}).encode()
            for r in rows]


def load_test(port: int, bodies: list[bytes], rate: float, duration: float,
              n_workers: int = 32, grace: float = 10.0) -> dict:
    """Open-loop load: ``rate * duration`` requests, each due at ``t0 + i / rate``."""
    n = int(rate * duration)
    latency = np.full(n, np.nan)
    service = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int64)
    counter = itertools.count()
    t0 = time.perf_counter() + 0.5
    deadline = t0 + duration + grace

    def worker():
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            while True:
                i = next(counter)
                if i >= n:
                    return
                due = t0 + i / rate
                now = time.perf_counter()
                if now > deadline:
                    return
                if due > now:
                    time.sleep(due - now)
                sent = time.perf_counter()
                try:
                    conn.request("POST", "/recommend", body=bodies[i % len(bodies)],
                                 headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    status[i] = resp.status
                except (OSError, http.client.HTTPException):
                    status[i] = -1
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=10)
                end = time.perf_counter()
                latency[i] = end - due
                service[i] = end - sent
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.perf_counter()) + 1)
    done = ~np.isnan(latency)
    ok = status == 200
    wall = np.nanmax(latency + (t0 + np.arange(n) / rate)) - t0 if done.any() else np.nan
    lat_ms = latency[done] * 1e3
    return {
        "rate": rate, "duration_s": duration, "planned": n, "sent": int(done.sum()),
        "ok": int(ok.sum()), "errors": int(done.sum() - ok.sum()),
        "achieved_rps": float(done.sum() / wall) if done.any() else 0.0,
        "p50_ms": float(np.percentile(lat_ms, 50)), "p90_ms": float(np.percentile(lat_ms, 90)),
        "p99_ms": float(np.percentile(lat_ms, 99)), "max_ms": float(lat_ms.max()),
        "service_p99_ms": float(np.percentile(service[done] * 1e3, 99)),
    }


def _raw(port: int, data: bytes) -> int:
    """Send raw bytes; return the HTTP status of the answer (or -1)."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(data)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    try:
        return int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return -1


def malformed_requests(n_items: int, max_len: int) -> list[tuple[str, bytes]]:
    """(label, raw HTTP request) pairs that must all get a 4xx."""

    def post(body: bytes, path: str = "/recommend", extra: str = "") -> bytes:
        return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
                f"{extra}\r\n").encode() + body

    js = lambda obj: post(json.dumps(obj).encode())  # noqa: E731
    return [
        ("bad JSON", post(b"{'items': [1, 2")),
        ("not an object", js([1, 2, 3])),
        ("unknown field", js({"items": [1], "user": 7})),
        ("no history", js({"k": 5})),
        ("both histories", js({"items": [1], "item_ids": [1]})),
        ("unknown item index", js({"items": [0, n_items]})),
        ("negative item index", js({"items": [-1]})),
        ("huge item index", js({"items": [10**30]})),
        ("item as a string", js({"items": ["1"]})),
        ("item as a bool", js({"items": [True]})),
        ("unknown original id", js({"item_ids": [10**9]})),
        ("negative original id", js({"item_ids": [-1]})),
        ("original id beyond 64 bits", js({"item_ids": [2**64 + 1]})),
        ("original id of the wrong type", js({"item_ids": ["Toy Story"]})),
        ("k = 0", js({"items": [1], "k": 0})),
        ("k too large", js({"items": [1], "k": 10**6})),
        ("k as a float", js({"items": [1], "k": 2.5})),
        ("filter_seen not a bool", js({"items": [1], "filter_seen": "yes"})),
        ("history longer than max_len", js({"items": [1] * (max_len + 1)})),
        ("deeply nested JSON", post(b"[" * 30000 + b"]" * 30000)),
        ("NaN", post(b'{"items": [1], "k": NaN}')),
        ("huge body", post(b" " * (1 << 20))),
        ("bad Content-Length", f"POST /recommend HTTP/1.1\r\nHost: {HOST}\r\n"
                               f"Content-Length: abc\r\n\r\n".encode()),
        ("no Content-Length", f"POST /recommend HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()),
        ("unknown path", post(b"{}", path="/admin")),
        ("GET unknown path", f"GET /etc/passwd HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()),
        *[(method, f"{method} /recommend HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
          for method in ("HEAD", "DELETE", "OPTIONS", "TRACE", "PUT", "PATCH", "BREW")],
        ("garbage request line", b"HELLO\r\n\r\n"),
    ]


def burst(port: int, cases: list[tuple[str, bytes]], repeats: int, n_workers: int = 16):
    jobs = [case for case in cases for _ in range(repeats)]
    results: list[tuple[str, int]] = []
    lock = threading.Lock()
    it = iter(jobs)

    def worker():
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                return
            label, raw = job
            try:
                code = _raw(port, raw)
            except OSError:
                code = -1
            with lock:
                results.append((label, code))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n_workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    seconds = time.perf_counter() - t0
    bad = sorted({(label, code) for label, code in results if not 400 <= code < 500})
    return {
        "requests": len(jobs), "answered": len(results), "seconds": seconds,
        "statuses": dict(sorted(Counter(code for _, code in results).items())),
        "all_4xx": not bad and len(results) == len(jobs), "not_4xx": bad,
    }


class SlowClients:
    """``n`` clients, each sending a request line and then one header byte every ``interval``
    seconds, from the ``sources`` addresses in turn. A client cut off by the server reconnects
    at once; one refused (429, 503) retries after ``interval``. Runs in one thread (select)."""

    def __init__(self, port: int, n: int, sources: list[str], interval: float = 2.0):
        self.port, self.n, self.sources, self.interval = port, n, sources, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.statuses: Counter = Counter()  # how each connection ended
        self.held: list[float] = []  # seconds each accepted connection was held
        self.opened = 0
        self.max_open = 0

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _connect(self, i: int):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.sources[i % len(self.sources)], 0))
            sock.settimeout(5)
            sock.connect((HOST, self.port))
            sock.sendall(f"POST /recommend HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())
            sock.setblocking(False)
        except OSError:
            sock.close()
            self.statuses["connect failed"] += 1
            return None
        self.opened += 1
        return sock

    def _run(self):
        n, interval = self.n, self.interval
        socks: list = [None] * n
        opened = [0.0] * n
        due = [0.0] * n  # next byte, or next connection attempt
        while not self._stop.is_set():
            now = time.monotonic()
            for i in range(n):
                if socks[i] is None and now >= due[i]:
                    socks[i] = self._connect(i)
                    opened[i] = now
                    due[i] = now + interval * (1 + i / n)  # spread the bytes over time
            live = [s for s in socks if s is not None]
            self.max_open = max(self.max_open, len(live))
            readable = select.select(live, [], [], 0.05)[0] if live else []
            now = time.monotonic()
            for i, sock in enumerate(socks):
                if sock is None:
                    continue
                ended = None
                if sock in readable:
                    try:
                        head = sock.recv(4096)
                    except OSError:
                        head = b""
                    ended = head[9:12].decode(errors="replace") if head else "closed"
                elif now >= due[i]:
                    try:
                        sock.send(b"a")
                        due[i] = now + interval
                    except OSError:
                        ended = "reset"
                if ended is not None:
                    sock.close()
                    socks[i] = None
                    self.statuses[ended] += 1
                    refused = ended in ("429", "503")
                    if not refused:
                        self.held.append(now - opened[i])
                    due[i] = now + (interval if refused else 0.0)
        for sock in socks:
            if sock is not None:
                sock.close()

    def summary(self) -> dict:
        held = np.asarray(self.held) if self.held else np.zeros(1)
        return {"slow_clients": self.n, "addresses": len(self.sources),
                "connections_opened": self.opened, "most_open_at_once": self.max_open,
                "ended_by": dict(sorted(self.statuses.items())),
                "held_p50_s": float(np.median(held)), "held_max_s": float(held.max())}


def _usable_sources(sources: list[str]) -> bool:
    try:
        for source in sources:
            with socket.socket() as sock:
                sock.bind((source, 0))
    except OSError:
        return False
    return True


def slow_client_runs(port: int, bodies: list[bytes], rate: float, duration: float,
                     n_slow: int, rounds: int) -> tuple[list[dict], list[dict]]:
    """The load at ``rate`` alone, then with ``n_slow`` slow clients from one address, then
    from ``n_slow`` addresses; ``rounds`` times in turn, so that a change in the machine's
    load hits the three alike. Returns every run and, per setting, the median p99 over the
    rounds next to the median alone."""
    settings = [("alone", [])]
    for name, sources in (("one address", ["127.0.0.2"]),
                          (f"{n_slow} addresses", [f"127.0.1.{i + 1}" for i in range(n_slow)])):
        if _usable_sources(sources):
            settings.append((name, sources))
        else:
            print(f"skipped {name}: cannot bind {sources[0]} (not a loopback address here)")
    runs = []
    for r in range(rounds):
        for name, sources in settings:
            if not sources:
                row = {"slow_clients": 0, "addresses": 0,
                       **load_test(port, bodies, rate, duration)}
            else:
                with SlowClients(port, n_slow, sources) as slow:
                    time.sleep(3.0)  # all connected and trickling
                    row = load_test(port, bodies, rate, duration)
                row = {**slow.summary(), **row}
            runs.append({"round": r + 1, "setting": name, **row})
            print(runs[-1], flush=True)
    summary = []
    alone = float(np.median([x["p99_ms"] for x in runs if x["setting"] == "alone"]))
    for name, _ in settings:
        mine = [x for x in runs if x["setting"] == name]
        p99 = float(np.median([x["p99_ms"] for x in mine]))
        summary.append({
            "setting": name, "rounds": len(mine), "ok": sum(x["ok"] for x in mine),
            "errors": sum(x["errors"] for x in mine),
            "p50_ms": float(np.median([x["p50_ms"] for x in mine])), "p99_ms": p99,
            "p99_vs_alone": p99 / alone,
            "held_max_s": max((x.get("held_max_s", 0.0) for x in mine), default=0.0),
            "ended_by": dict(sum((Counter(x.get("ended_by", {})) for x in mine), Counter())),
        })
    return runs, summary


#: Every method on every path: the served ones answer 200, the others a 4xx; all in JSON.
METHODS = ("GET", "POST", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "PATCH", "CONNECT",
           "PROPFIND", "BREW", "get")
SERVED = {("GET", "/health"), ("POST", "/recommend")}


def methods_check(port: int) -> dict:
    rows = []
    for method, path in itertools.product(METHODS, ("/recommend", "/health", "/admin")):
        body = b'{"items": [1]}'
        raw = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
               f"Connection: close\r\n\r\n").encode() + body
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(raw)
            resp = http.client.HTTPResponse(sock, method=method)
            resp.begin()
            data = resp.read()
        try:
            parsed = json.loads(data) if method != "HEAD" else None
            is_json = resp.getheader("Content-Type") == "application/json" and (
                method == "HEAD" or isinstance(parsed, dict))
        except ValueError:
            is_json = False
        served = (method, path) in SERVED
        rows.append({"method": method, "path": path, "status": resp.status, "json": is_json,
                     "ok": is_json and (resp.status == 200 if served
                                        else 400 <= resp.status < 500)})
    return {"requests": len(rows), "all_json": all(r["json"] for r in rows),
            "all_as_expected": all(r["ok"] for r in rows),
            "statuses": dict(sorted(Counter(r["status"] for r in rows).items())),
            "not_as_expected": [r for r in rows if not r["ok"]]}


def serve_and_load(args, backend, model, model_path, encoder_path, X) -> dict:
    """One backend: start its server, load it at each rate, send the burst, stop it."""
    proc, port = start_server(model_path, encoder_path, args.inference_precision, backend)
    try:
        bodies = request_bodies(X, model.max_len, 5000)
        load_test(port, bodies, rate=200.0, duration=2.0)  # warm-up, not reported
        rows = []
        for rate in args.rates:
            row = {"backend": backend, **load_test(port, bodies, rate=rate,
                                                   duration=args.duration)}
            rows.append(row)
            print(row, flush=True)
        slow, slow_runs = [], []
        if args.slow_clients:
            slow_runs, slow = slow_client_runs(port, bodies, args.slow_rate, args.slow_duration,
                                               args.slow_clients, args.slow_rounds)
            slow = [{"backend": backend, **row} for row in slow]
            slow_runs = [{"backend": backend, **row} for row in slow_runs]
        cases = malformed_requests(X.shape[1], model.max_len)
        bad = burst(port, cases, args.burst_repeats)
        methods = methods_check(port)
        after = load_test(port, bodies, rate=50.0, duration=1.0)
        alive = proc.poll() is None
    finally:
        stop_server(proc)
    print(f"{backend}: malformed burst of {bad['requests']} requests ({len(cases)} kinds) in "
          f"{bad['seconds']:.2f} s, statuses {bad['statuses']}, all 4xx: {bad['all_4xx']}; "
          f"{methods['requests']} method x path requests, all JSON: {methods['all_json']}, "
          f"as expected: {methods['all_as_expected']}; after them {after['ok']}/"
          f"{after['planned']} ok, server alive: {alive}", flush=True)
    return {"rows": rows, "slow_rows": slow, "slow_runs": slow_runs,
            "malformed_burst": bad, "methods": methods,
            "after_burst": after, "server_alive": alive}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None)
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 500.0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--inference-precision", default="fp32",
                        choices=["auto", "fp32", "bf16", "int8"])
    parser.add_argument("--backends", nargs="+", default=["eager", "onnx"],
                        choices=["eager", "onnx"])
    parser.add_argument("--burst-repeats", type=int, default=20)
    parser.add_argument("--slow-clients", type=int, default=70, help="0: no slow-client runs")
    parser.add_argument("--slow-rate", type=float, default=100.0,
                        help="requests per second of the valid load beside the slow clients")
    parser.add_argument("--slow-duration", type=float, default=20.0, help="seconds per run")
    parser.add_argument("--slow-rounds", type=int, default=3,
                        help="the three settings are run in turn this many times")
    parser.add_argument("--name", default="service", help="result file name")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. 'trial')")
    args = parser.parse_args(argv)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model, model_path, encoder_path, X, data_name = prepare_model(Path(tmp), args.data)
        for backend in args.backends:
            results[backend] = serve_and_load(args, backend, model, model_path, encoder_path, X)
    rows = [row for r in results.values() for row in r["rows"]]
    print(markdown_table(rows, ["backend", "rate", "sent", "ok", "errors", "achieved_rps",
                                "p50_ms", "p90_ms", "p99_ms", "max_ms"]))
    slow_rows = [row for r in results.values() for row in r["slow_rows"]]
    slow_columns = ["backend", "setting", "rounds", "ok", "errors", "p50_ms", "p99_ms",
                    "p99_vs_alone", "held_max_s", "ended_by"]
    if slow_rows:
        print(markdown_table(slow_rows, slow_columns))
    save_json(args.name, {
        "note": args.note,
        "rows": rows,
        "slow_clients": slow_rows,
        "slow_clients_how": f"the valid load at {args.slow_rate:g} requests/s, "
                            f"{args.slow_duration:g} s per run, alone and beside "
                            f"{args.slow_clients} slow clients (a "
                            "request line, then one header byte every 2 s; cut-off ones "
                            "reconnect at once, refused ones after 2 s) from one address or from "
                            f"as many addresses, the three in turn, {args.slow_rounds} rounds; "
                            "medians over the rounds; p99_vs_alone: p99 / the p99 alone (goal "
                            "<= 2); held_max_s: the longest a slow client held a connection",
        "slow_client_runs": [row for r in results.values() for row in r["slow_runs"]],
        "methods": {b: r["methods"] for b, r in results.items()},
        "malformed_burst": {b: r["malformed_burst"] for b, r in results.items()},
        "after_burst": {b: r["after_burst"] for b, r in results.items()},
        "server_alive": {b: r["server_alive"] for b, r in results.items()},
        "data": data_name, "model": "SeqRecommender (defaults, 1 epoch)",
        "inference_precision": args.inference_precision, "server_torch_threads": 1,
        "cpus": os.cpu_count(), "cpu": _cpu_name(),
    })


if __name__ == "__main__":
    main()
