"""Processes and clients for the end-to-end tests: upstream replicas that
report what they received, Envoy started from the shipped configurations
(through a2a_harness.Envoy), and HTTP/1.1 (keep-alive, raw chunked) and
HTTP/2 (h2c) clients."""

import concurrent.futures
import hashlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import a2a_harness
from a2a_harness import (REPO, free_port, hcm, load_config, pause_process, plugin_of, rewrite_config,
                         stop_process, wait_until)

UPSTREAM_SCRIPT = REPO / "envoy/sandbox/upstream.py"
START_TIMEOUT_SECS = 30


class Upstreams:
    """Replicas of envoy/sandbox/upstream.py, all in one child process."""

    def __init__(self, names, workdir):
        self.names = list(names)
        self.ports = [free_port() for _ in self.names]
        self.log = Path(workdir) / "upstreams.log"
        specs = [f"--replica={n}=127.0.0.1:{p}" for n, p in zip(self.names, self.ports)]
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(UPSTREAM_SCRIPT), *specs],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        wait_until(
            lambda: "ready" in self.log.read_text().splitlines(),
            START_TIMEOUT_SECS, "upstream replicas", self.proc, self.log,
        )

    @property
    def by_address(self):
        """Replica name for each host key Envoy hashes ("127.0.0.1:PORT")."""
        return {f"127.0.0.1:{p}": n for n, p in zip(self.names, self.ports)}

    def stop(self):
        stop_process(self.proc)
        self._log_file.close()


class Envoy(a2a_harness.Envoy):
    """A shipped configuration (a path relative to the repository, or a
    loaded one) rewritten for `upstreams` on free loopback ports, run with
    its own base id and `--concurrency 2`; `transform` makes last changes to
    the rewritten config (ports and module path already set), e.g. moving
    the listener to LDS."""

    def __init__(self, cfg_source, upstreams, workdir, *, name, binary=None, plugin=None,
                 with_filter=True, concurrency=2, extra_args=(), transform=None, task_store=None):
        self.upstreams = upstreams
        port, admin_port = free_port(), free_port()
        cfg = load_config(cfg_source) if isinstance(cfg_source, str) else cfg_source
        cfg = rewrite_config(cfg, listen_port=port, admin_port=admin_port,
                             upstream_ports=upstreams.ports, plugin=plugin,
                             with_filter=with_filter)
        if transform is not None:
            cfg = transform(cfg)
        super().__init__(cfg, workdir=workdir, name=name, binary=binary, concurrency=concurrency,
                         log_level="info", extra_args=extra_args, task_store=task_store)
        self.port = port


class Agents:
    """Agent replicas (a2a_harness.running_replicas) as `Envoy` wants its
    upstreams."""

    def __init__(self, replicas):
        self.replicas = replicas
        self.names = [r.name for r in replicas]
        self.ports = [r.port for r in replicas]


def rpc(port, method, params):
    """One JSON-RPC call through Envoy on `port`; the decoded answer."""
    body = json.dumps({"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": method,
                       "params": params}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def first_turn(port, text):
    """A message/send without a contextId: the agent answers with a task."""
    return rpc(port, "message/send", {"message": {
        "kind": "message", "messageId": str(uuid.uuid4()), "role": "user",
        "parts": [{"kind": "text", "text": text}]}})


def fetch(port, task):
    """tasks/get of `task`: True if the replica it reached holds it."""
    got = rpc(port, "tasks/get", {"id": task["id"]})
    if "result" not in got:
        return False
    assert got["result"]["id"] == task["id"]
    assert got["result"]["contextId"] == task["contextId"]
    return True


def counter_delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)
            if after.get(k, 0) != before.get(k, 0)}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Exchange:
    """One request as sent and the upstream's report of what arrived."""

    def __init__(self, *, method="POST", path="/", body=b"", headers=(), context_id=None, tag=None):
        self.method = method
        self.path = path
        self.body = body
        self.headers = list(headers)
        self.context_id = context_id
        self.tag = tag
        self.status = None
        self.report = None
        self.raw = None

    def describe(self):
        return f"{self.method} {self.path} tag={self.tag} context_id={self.context_id!r}"

    def problems(self, *, expect_context_ids=None, expect_body=True):
        """What differs from the expectation, as readable strings."""
        out = []
        if self.status != 200:
            return [f"{self.describe()}: status {self.status}, body {self.raw[:200]!r}"]
        if expect_body and (self.report["body_sha256"], self.report["body_length"]) != (
                sha256(self.body), len(self.body)):
            out.append(f"{self.describe()}: body changed: sent {len(self.body)} bytes "
                       f"{sha256(self.body)[:12]}, upstream got {self.report['body_length']} "
                       f"bytes {self.report['body_sha256'][:12]}")
        want = expect_context_ids
        if want is None:
            want = [self.context_id] if self.context_id is not None else []
        if self.report["context_ids"] != want:
            out.append(f"{self.describe()}: upstream x-context-id {self.report['context_ids']!r}, "
                       f"expected {want!r}")
        return out


class Client:
    """HTTP/1.1 keep-alive client for one thread."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def send(self, ex):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.putrequest(ex.method, ex.path, skip_accept_encoding=True)
                names = {n.lower() for n, _ in ex.headers}
                for n, v in ex.headers:
                    self.conn.putheader(n, v)
                if ex.body or ex.method == "POST":
                    if "content-length" not in names and "transfer-encoding" not in names:
                        self.conn.putheader("content-length", str(len(ex.body)))
                self.conn.endheaders(ex.body or None)
                resp = self.conn.getresponse()
                ex.raw = resp.read()
                ex.status = resp.status
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection Envoy closed between requests:
                # reconnect once; a second failure is real.
                self.close()
                if attempt:
                    raise
        if ex.status == 200 and ex.raw.startswith(b"{"):
            ex.report = json.loads(ex.raw)
        return ex

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def send_all(port, exchanges, threads=4):
    """Send every exchange over `threads` keep-alive connections."""
    exchanges = list(exchanges)
    slices = [exchanges[i::threads] for i in range(threads)]
    errors = []

    def run(batch):
        client = Client(port)
        try:
            for ex in batch:
                client.send(ex)
        except Exception as exc:  # surfaced below with the request that failed
            errors.append(exc)
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, slices))
    if errors:
        raise errors[0]
    return exchanges


def send_chunked(port, path, headers, chunks, delay=0.005, trailers=()):
    """Raw HTTP/1.1 chunked upload, one chunk per write with a pause between,
    so that Envoy sees the body in several pieces. Returns (status, body)."""
    head = [f"POST {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "transfer-encoding: chunked",
            "connection: close"]
    head += [f"{n}: {v}" for n, v in headers]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for chunk in chunks:
            time.sleep(delay)
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        time.sleep(delay)
        s.sendall(b"0\r\n" + b"".join(f"{n}: {v}\r\n".encode() for n, v in trailers) + b"\r\n")
        data = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    head_raw, _, body = data.partition(b"\r\n\r\n")
    status = int(head_raw.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_raw.lower():
        body = dechunk(body)
    return status, body


def dechunk(data):
    out = b""
    while True:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += rest[:size]
        data = rest[size + 2:]


def send_h2(port, path, headers, chunks, trailers=(), delay=0.005, whole_frames=False):
    """One HTTP/2 request over h2c with prior knowledge: the body in several
    DATA frames (each waiting for flow-control window as a real client
    does), then optionally trailers (which end the stream). With
    `whole_frames`, each chunk (at most one frame's size) waits for the
    window it needs and goes as one DATA frame, never split by the window.
    Returns (status, response body)."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    answer = {"status": None, "body": b"", "done": False}
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:

        def receive():
            data = s.recv(65536)
            if not data:
                answer["done"] = True
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    answer["status"] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    answer["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    answer["done"] = True
            s.sendall(conn.data_to_send())

        conn.initiate_connection()
        s.sendall(conn.data_to_send())
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", path), (":scheme", "http"),
                                (":authority", f"127.0.0.1:{port}"), *headers])
        s.sendall(conn.data_to_send())
        for i, chunk in enumerate(chunks):
            time.sleep(delay)
            last = i == len(chunks) - 1 and not trailers
            if whole_frames:
                assert len(chunk) <= conn.max_outbound_frame_size, len(chunk)
                while conn.local_flow_control_window(sid) < len(chunk) and not answer["done"]:
                    receive()
            if not chunk and last:
                # An empty last chunk: the end of the stream in a DATA frame
                # of its own.
                conn.end_stream(sid)
                s.sendall(conn.data_to_send())
            while chunk and not answer["done"]:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    receive()
                    continue
                piece, chunk = chunk[:window], chunk[window:]
                conn.send_data(sid, piece, end_stream=last and not chunk)
                s.sendall(conn.data_to_send())
            if answer["done"]:
                break
        if trailers and not answer["done"]:
            time.sleep(delay)
            conn.send_headers(sid, list(trailers), end_stream=True)
            s.sendall(conn.data_to_send())
        while not answer["done"]:
            receive()
        return answer["status"], answer["body"]


class Figures:
    """What the full run observed, written under out/ at the end of the session."""

    def __init__(self):
        self.lock = threading.Lock()
        self.runs = {}

    def record(self, key, value):
        with self.lock:
            self.runs[key] = value


def report(status, raw):
    """The upstream's report of what it received, from a 200 answer."""
    assert status == 200, raw[:300]
    return json.loads(raw)


def assert_minted(got, doc):
    """The upstream got `doc` with a contextId added to its message, the same
    value as the one header it got; returns that contextId."""
    arrived = json.loads(got["body"])
    minted = arrived["params"]["message"].pop("contextId", None)
    assert minted is not None and got["context_ids"] == [minted], got["context_ids"]
    assert arrived == doc
    return minted


def first_turn_of(size, rpc_id, message_id):
    """A JSON-RPC first turn (no contextId) padded to exactly `size` bytes:
    (the document, its bytes)."""
    doc = {"jsonrpc": "2.0", "id": rpc_id, "method": "message/send",
           "params": {"message": {"kind": "message", "messageId": message_id, "role": "user",
                                  "parts": [{"kind": "text", "text": ""}]}}}
    doc["params"]["message"]["parts"][0]["text"] = "e" * (size - len(json.dumps(doc).encode()))
    body = json.dumps(doc).encode()
    assert len(body) == size
    return doc, body


# Envoy Gateway's HTTP/2 stream window.
H2_WINDOW = 65536
# Why the Wasm filter is not run under that window without a route limit.
WASM_UNDER_A_WINDOW = ("the Wasm filter needs a stream limit of max_scan_bytes plus one read "
                       "(README, max_scan_bytes); under it Envoy answers 413, as documented")


def h2_window_config(path):
    """The configuration at `path` with Envoy Gateway's HTTP/2 stream window
    and, as there, no route buffer limit: an HTTP/2 stream's buffer limit is
    then its window."""
    cfg = load_config(path)
    manager = hcm(cfg)
    manager["http2_protocol_options"] = {"initial_stream_window_size": H2_WINDOW}
    for vhost in manager["route_config"]["virtual_hosts"]:
        for route in vhost["routes"]:
            route.pop("request_body_buffer_limit", None)
    return cfg


def body_past_the_window(ctx, inside):
    """A `message/send` of about 70 KB with the contextId `ctx` 48 KB in
    (`inside` the window) or past the window, where only the last of
    `frames_past_the_window`'s frames holds it."""
    before_ctx, after_ctx = (48_000, 22_000) if inside else (70_000, 0)
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "message/send", "params": {"message": {
        "kind": "message", "messageId": "m-w", "role": "user",
        "parts": [{"kind": "text", "text": "w" * before_ctx}], "contextId": ctx,
        "metadata": {"note": "v" * after_ctx}}}}).encode()
    at = body.index(ctx.encode())
    assert 48_000 < at < 60_000 if inside else at > H2_WINDOW, at
    return body


# How frames_past_the_window holds a body before its last frame, as
# (frame, held): four frames under the window, or four that fill it exactly.
HELD_ACROSS = (15_000, 60_000)
HELD_TO = (16_384, H2_WINDOW)


def frames_past_the_window(body, frame, held):
    """`body` as DATA frames of `frame` bytes up to `held` bytes (at most the
    window), then the rest in one frame (at most 16 KiB) that takes it past
    the window: five frames."""
    pieces = [body[i:i + frame] for i in range(0, held, frame)] + [body[held:]]
    assert sum(map(len, pieces[:-1])) == held <= H2_WINDOW < len(body)
    assert len(pieces) == 5 and len(pieces[-1]) <= 16_384
    return pieces


def affinity(exchanges, replicas):
    """Where each contextId's requests landed: the fraction of contexts whose
    requests all reached one replica, and contexts and requests per replica."""
    seen = {}
    requests = dict.fromkeys(replicas, 0)
    for ex in exchanges:
        if ex.report is None:
            continue
        seen.setdefault(ex.context_id, set()).add(ex.report["replica"])
        requests[ex.report["replica"]] = requests.get(ex.report["replica"], 0) + 1
    pinned = {ctx: next(iter(r)) for ctx, r in seen.items() if len(r) == 1}
    spread = dict.fromkeys(replicas, 0)
    for replica in pinned.values():
        spread[replica] += 1
    return {
        "contexts": len(seen),
        "requests": sum(requests.values()),
        "contexts_on_one_replica": len(pinned),
        "affinity": len(pinned) / len(seen) if seen else 0.0,
        "contexts_per_replica": spread,
        "requests_per_replica": requests,
        "split_contexts": sorted(ctx for ctx, r in seen.items() if len(r) > 1),
        "replica_of": pinned,
    }


def predict_hosts(envoy, keys):
    """The host crates/envoy-lb predicts for each key, from the cluster
    settings of the configuration this Envoy runs."""
    cluster = envoy.config["static_resources"]["clusters"][0]
    hosts = [f"127.0.0.1:{p}" for p in envoy.upstreams.ports]
    return a2a_harness.predict_hosts(cluster, hosts, keys)


def not_where_predicted(envoy, seen, keys):
    """The keys that did not land where crates/envoy-lb predicts, as
    (key, replica seen, replica predicted); `seen` is affinity()'s."""
    predicted = predict_hosts(envoy, keys)
    names = envoy.upstreams.by_address
    return [(k, seen["replica_of"][k], names.get(predicted.get(k))) for k in keys
            if seen["replica_of"][k] != names.get(predicted.get(k))]


def send_h2_interleaved(port, requests, piece=16):
    """Several requests on one h2c connection at once, their bodies cut in
    `piece`-byte DATA frames sent round-robin across the streams, each stream
    ended by trailers when it has some. requests: (path, headers, body,
    trailers). Returns [(status, body)] in request order."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        conn.initiate_connection()
        sids = []
        for path, headers, _, _ in requests:
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "POST"), (":path", path), (":scheme", "http"),
                                    (":authority", f"127.0.0.1:{port}"), *headers])
            sids.append(sid)
        s.sendall(conn.data_to_send())
        offsets = [0] * len(requests)
        while any(off < len(r[2]) for off, r in zip(offsets, requests)):
            for i, (sid, (_, _, body, trailers)) in enumerate(zip(sids, requests)):
                if offsets[i] >= len(body):
                    continue
                chunk = body[offsets[i]:offsets[i] + piece]
                offsets[i] += len(chunk)
                conn.send_data(sid, chunk, end_stream=offsets[i] >= len(body) and not trailers)
                if offsets[i] >= len(body) and trailers:
                    conn.send_headers(sid, list(trailers), end_stream=True)
            s.sendall(conn.data_to_send())
            time.sleep(0.001)
        results = {sid: [None, b""] for sid in sids}
        open_streams = set(sids)
        while open_streams:
            data = s.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    results[event.stream_id][0] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    results[event.stream_id][1] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    open_streams.discard(event.stream_id)
            s.sendall(conn.data_to_send())
        return [tuple(results[sid]) for sid in sids]


def post_in_a_burst(envoy, body, first, headers=(("content-type", "application/json"),)):
    """POST with a fixed length: `first` bytes, then (Envoy stopped with
    SIGSTOP) as much of the rest as the kernel's socket buffers take, then
    Envoy resumed. Envoy then reads a burst far larger than its usual reads,
    as it does when it falls behind a fast client. Returns (status, body)."""
    head = ["POST / HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}",
            "connection: close", *(f"{n}: {v}" for n, v in headers)]
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=30) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[:first])
        # The request is active once Envoy has read the head (and with it,
        # in the same read, the first bytes), which the filter now holds.
        wait_until(lambda: envoy.stat("http.a2a_ingress.downstream_rq_active") >= 1, 10,
                   "request seen by Envoy")
        time.sleep(0.05)
        sent = first
        pause_process(envoy.proc)
        try:
            s.setblocking(False)
            deadline = time.monotonic() + 2
            while sent < len(body) and time.monotonic() < deadline:
                try:
                    sent += s.send(body[sent:sent + 65536])
                except BlockingIOError:
                    time.sleep(0.01)
        finally:
            envoy.proc.send_signal(signal.SIGCONT)
        s.setblocking(True)
        data = b""
        try:
            s.sendall(body[sent:])
            while True:
                got = s.recv(65536)
                if not got:
                    break
                data += got
        except ConnectionResetError:
            # Envoy answered early (e.g. 413) and closed while we still sent.
            pass
    head_raw, _, rest = data.partition(b"\r\n\r\n")
    # A filter that streams the response (ext_proc in STREAMED mode) makes
    # Envoy send it chunked instead of with its content-length.
    if b"transfer-encoding: chunked" in head_raw.lower():
        rest = dechunk(rest)
    return int(head_raw.split(b" ", 2)[1]) if head_raw else None, rest


# The dynamic module's filter-state variant of its shipped config.
FILTER_STATE_CONFIG = "envoy/envoy-dynamic-module-filter-state.yaml"


def first_route(cfg):
    """The first route of the first listener's HTTP connection manager."""
    return hcm(cfg)["route_config"]["virtual_hosts"][0]["routes"][0]


def filter_state_parts():
    """The filter configuration (JSON text) and the route hash policy of
    FILTER_STATE_CONFIG, to put into the configs the suites start from."""
    cfg = load_config(FILTER_STATE_CONFIG)
    return plugin_of(cfg), first_route(cfg)["route"]["hash_policy"]
