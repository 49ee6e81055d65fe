"""contextIds that are not valid HTTP field values, through Envoy 1.40 to
HTTP/2 upstreams built on Python's `h2` library (hypercorn;
tests/e2e/h2_upstream.py).

A contextId is any JSON string to the agents, but a header value may not
start or end with whitespace or hold control characters (RFC 9110 section
5.5, RFC 9113 section 8.2.1); such an upstream resets the stream (and with
it other requests in flight on the connection) when it gets one. The filter
sends such a contextId percent-encoded, the same way every time, so the
request reaches the agent and every turn of the conversation hashes alike.
The first test shows that the upstream does reject the raw value."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from a2a_harness import free_port, h2_upstream, load_config, stop_process, wait_until
from e2e_harness import Envoy, Exchange, counter_delta, send_all

REPLICAS = ["h2-replica-1", "h2-replica-2", "h2-replica-3"]
SCRIPT = Path(__file__).with_name("h2_upstream.py")
JSON = ("content-type", "application/json")
ODD = [" padded", "padded ", " both ", "\tpadded", "tab\there", "line\nbreak", "nul\u0000x",
       "ctrl\u0001x", "del\u007f", "caf\u00e9", "50%", "inner space"]


def field_value(ctx):
    """The header value the filter sends for `ctx` (README, "Odd bodies"):
    the id when it is visible ASCII with spaces only inside and no `%`,
    else every other byte and `%` as %XX."""
    raw = ctx.encode()
    plain = [0x21 <= b <= 0x7E and b != 0x25 for b in raw]
    if raw and plain[0] and plain[-1] and all(p or b == 0x20 for p, b in zip(plain, raw)):
        return ctx
    return "".join(chr(b) if p else f"%{b:02X}" for p, b in zip(plain, raw))


class H2Replicas:
    """One hypercorn process per replica, on free loopback ports."""

    def __init__(self, names, workdir):
        self.names = list(names)
        self.ports = [free_port() for _ in self.names]
        self.procs = []
        self.logs = []
        for name, port in zip(self.names, self.ports):
            log = open(Path(workdir) / f"{name}.log", "w")
            self.logs.append(log)
            self.procs.append(subprocess.Popen([sys.executable, str(SCRIPT), name, str(port)],
                                               stdout=log, stderr=subprocess.STDOUT))
        for proc, port, log in zip(self.procs, self.ports, self.logs):
            wait_until(lambda p=port: _listening(p), 30, f"hypercorn on {port}", proc,
                       Path(log.name))

    @property
    def by_address(self):
        return {f"127.0.0.1:{p}": n for n, p in zip(self.names, self.ports)}

    def stop(self):
        for proc in self.procs:
            stop_process(proc)
        for log in self.logs:
            log.close()


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    reps = H2Replicas(REPLICAS, tmp_path_factory.mktemp("h2-replicas"))
    yield reps
    reps.stop()


@pytest.fixture(scope="module")
def gateway(wasm_module, replicas, tmp_path_factory):
    envoy = Envoy(h2_upstream(load_config("envoy/envoy.yaml")), replicas,
                  tmp_path_factory.mktemp("h2-envoy"), name="envoy-h2-upstream")
    yield envoy
    envoy.stop()


def h2_request(port, headers):
    """One HTTP/2 request straight to a replica, the header values sent
    exactly as given. Returns the response status, or the h2 event that
    ended the stream or connection instead."""
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                              (":authority", f"127.0.0.1:{port}"), *headers], end_stream=True)
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                return "closed"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    return int(dict(event.headers)[b":status"])
                if isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    return type(event).__name__
            sock.sendall(conn.data_to_send())


def test_the_upstream_refuses_a_raw_padded_value(replicas):
    port = replicas.ports[0]
    assert h2_request(port, [("x-context-id", "padded")]) == 200
    # Surrounding whitespace, a line break, a NUL: the connection is ended
    # (GOAWAY), with every other stream on it.
    for raw in [" padded", "padded ", "\tpadded", "line\nbreak", "nul\x00x"]:
        answer = h2_request(port, [("x-context-id", raw)])
        assert answer != 200, f"{raw!r}: {answer}"
        print(f"hypercorn answered {raw!r} with {answer}")
    for ctx in ODD:
        assert h2_request(port, [("x-context-id", field_value(ctx))]) == 200, ctx


def test_odd_context_ids_arrive_encoded_and_stay_on_one_replica(gateway):
    exchanges = []
    for turn in range(3):
        for i, ctx in enumerate(ODD):
            body = json.dumps({"jsonrpc": "2.0", "id": f"{turn}-{i}", "method": "message/send",
                               "params": {"message": {"contextId": ctx, "role": "user",
                                                      "parts": [{"kind": "text", "text": "hi"}],
                                                      "messageId": f"m-{turn}-{i}"}}}).encode()
            exchanges.append(Exchange(body=body, headers=[JSON], context_id=field_value(ctx),
                                      tag=ctx))
            # An ordinary request beside it, sharing Envoy's upstream
            # connections: a reset would take it down too.
            plain = f"plain-{turn}-{i}"
            body = json.dumps({"jsonrpc": "2.0", "id": plain, "method": "message/send",
                               "params": {"message": {"contextId": plain, "role": "user",
                                                      "parts": []}}}).encode()
            exchanges.append(Exchange(body=body, headers=[JSON], context_id=plain, tag=plain))
    before = gateway.stats()
    send_all(gateway.port, exchanges, threads=4)
    delta = counter_delta(before, gateway.stats())
    problems = [p for ex in exchanges for p in ex.problems()]
    assert problems == [], problems[:10]
    assert {ex.report["http_version"] for ex in exchanges} == {"2"}
    replicas_of = {}
    for ex in exchanges:
        replicas_of.setdefault(ex.tag, set()).add(ex.report["replica"])
    split = {ctx: r for ctx, r in replicas_of.items() if len(r) != 1}
    assert split == {}, split
    assert delta.get("context_found") == len(exchanges), delta
