"""The filter in Envoy 1.40 with the shipped configurations, unchanged but for
addresses, ports and the module path: every A2A binding keeps a conversation
on one replica under RING_HASH and MAGLEV, the load spreads over the
replicas, and the upstream receives the body byte for byte with exactly one
`x-context-id`. Also uploads in many pieces (HTTP/1.1 chunked, HTTP/2 with
trailers), SSE responses, a body far over the scan limit, and minting."""

import json
import os
import random

import pytest

from a2a_bodies import BINDINGS, context_ids, exchange
from a2a_harness import REPO, current_shell
from e2e_harness import (H2_WINDOW, HELD_ACROSS, HELD_TO, WASM_UNDER_A_WINDOW, Exchange,
                         affinity, assert_minted, body_past_the_window, counter_delta,
                         first_turn_of, frames_past_the_window, h2_window_config,
                         post_in_a_burst, predict_hosts, report, send_all, send_chunked, send_h2,
                         send_h2_interleaved, sha256)

CONFIGS = {"ring": "envoy/envoy.yaml", "maglev": "envoy/envoy-maglev.yaml"}
CONTEXTS = int(os.environ.get("E2E_CONTEXTS", "1000"))
ROUNDS = 2


@pytest.fixture(scope="module")
def envoys(start_envoy):
    return {lb: start_envoy(path, name=f"filter-{lb}") for lb, path in CONFIGS.items()}


@pytest.fixture(scope="module")
def ring(envoys):
    return envoys["ring"]


def where(envoy, ctx):
    """The replica a plain JSON-RPC request with this contextId reaches."""
    ex = send_all(envoy.port, [exchange(random.Random(ctx), "jsonrpc-1.0 SendMessage", ctx)], 1)[0]
    assert ex.problems() == []
    return ex.report["replica"]


def assert_clean(exchanges, **expect):
    problems = [p for ex in exchanges for p in ex.problems(**expect)]
    assert not problems, f"{len(problems)} problems, first ones:\n" + "\n".join(problems[:20])


@pytest.mark.parametrize("lb", sorted(CONFIGS))
def test_every_binding_keeps_each_context_on_one_replica(envoys, upstreams, figures, lb):
    envoy = envoys[lb]
    rng = random.Random(f"bindings-{lb}")
    ctxs = context_ids(rng, CONTEXTS)
    sent = []
    for _ in range(ROUNDS):
        round_ = [exchange(rng, binding, ctx) for binding in BINDINGS for ctx in ctxs]
        rng.shuffle(round_)
        sent += round_
    before = envoy.stats()
    send_all(envoy.port, sent)
    delta = counter_delta(before, envoy.stats())

    # Byte-for-byte body and exactly one x-context-id equal to the contextId.
    assert_clean(sent)
    seen = affinity(sent, upstreams.names)
    assert seen["contexts"] == CONTEXTS
    # Every request of a contextId, over all six bindings and both rounds,
    # reached the same replica.
    assert seen["split_contexts"] == [], seen["split_contexts"][:10]
    # The conversations spread over all replicas (a third each is ideal).
    spread = seen["contexts_per_replica"]
    assert min(spread.values()) >= 0.15 * CONTEXTS, spread
    assert delta.get("context_found") == len(sent), delta
    # Every context reached exactly the replica that the offline model of
    # Envoy's ring / Maglev table (crates/envoy-lb) predicts for it.
    predicted = predict_hosts(envoy, ctxs)
    names = upstreams.by_address
    wrong = [(ctx, seen["replica_of"][ctx], names.get(predicted.get(ctx)))
             for ctx in ctxs if seen["replica_of"][ctx] != names.get(predicted.get(ctx))]
    assert not wrong, f"{len(wrong)} contexts not where envoy-lb predicts " \
                      f"(context, observed, predicted): {wrong[:10]}"

    figures.record(f"affinity-{lb}", {
        "envoy": "1.40.0",
        "lb_policy": {"ring": "RING_HASH", "maglev": "MAGLEV"}[lb],
        "bindings": list(BINDINGS),
        "contexts": seen["contexts"],
        "requests": seen["requests"],
        "requests_per_context": ROUNDS * len(BINDINGS),
        "fraction_with_affinity": seen["affinity"],
        "contexts_per_replica": spread,
        "requests_per_replica": seen["requests_per_replica"],
        "counters": delta,
        "contexts_where_envoy_lb_predicts": len(ctxs) - len(wrong),
        "summary": (f"{lb}: {seen['contexts']} contexts, {seen['requests']} requests, "
                    f"{100 * seen['affinity']:.1f}% of contexts on one replica, contexts per "
                    "replica " + "/".join(str(spread[n]) for n in upstreams.names)
                    + f", {len(ctxs) - len(wrong)}/{len(ctxs)} where envoy-lb predicts"),
    })


def _late_context_body(ctx, filler_bytes):
    # The contextId after a long text part: it arrives in the last pieces.
    doc = {"jsonrpc": "2.0", "id": 1, "method": "message/send",
           "params": {"message": {"kind": "message", "messageId": "m-late", "role": "user",
                                  "parts": [{"kind": "text", "text": "a" * filler_bytes}],
                                  "contextId": ctx}}}
    return json.dumps(doc).encode()


def _post_echoed(envoy, body):
    """POSTs a JSON body whose upstream echoes it back; returns the exchange
    (status 200) and the counters it moved."""
    ex = Exchange(path="/", body=body, headers=[("content-type", "application/json"),
                                                ("x-echo-body", "1")])
    before = envoy.stats()
    send_all(envoy.port, [ex], 1)
    delta = counter_delta(before, envoy.stats())
    assert ex.status == 200, ex.raw[:300]
    return ex, delta


def test_context_in_a_late_chunk_of_a_chunked_upload(ring):
    ctx = "late-chunk-7f3a"
    body = _late_context_body(ctx, 100_000)
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)]
    status, raw = send_chunked(ring.port, "/", [("content-type", "application/json")], chunks,
                               delay=0.002)
    got = report(status, raw)
    assert (got["body_sha256"], got["body_length"]) == (sha256(body), len(body))
    assert got["context_ids"] == [ctx]
    assert got["replica"] == where(ring, ctx)


@pytest.mark.parametrize("binding", ["jsonrpc-0.3 message/send", "rest-0.3 /v1/message:send request"])
def test_context_split_across_chunk_boundaries(ring, binding):
    ctx = f"split-{binding[:8]}-0042"
    ex = exchange(random.Random(3), binding, ctx)
    body = ex.body
    key = b'"context_id"' if b'"context_id"' in body else b'"contextId"'
    start = body.index(key)
    end = body.index(ctx.encode()) + len(ctx) + 1
    home = where(ring, ctx)
    failures = []
    # A cut at every byte of the key and the value, then tiny pieces.
    for cut in range(start, end + 1):
        status, raw = send_chunked(ring.port, ex.path, ex.headers, [body[:cut], body[cut:]],
                                   delay=0.003)
        got = json.loads(raw) if status == 200 else {"status": status}
        if (got.get("context_ids"), got.get("body_sha256"), got.get("replica")) != (
                [ctx], sha256(body), home):
            failures.append(f"cut at byte {cut}: {got}")
    pieces = [body[i:i + 3] for i in range(0, len(body), 3)]
    status, raw = send_chunked(ring.port, ex.path, ex.headers, pieces, delay=0.001)
    got = report(status, raw)
    if (got["context_ids"], got["body_sha256"]) != ([ctx], sha256(body)):
        failures.append(f"3-byte pieces: {got}")
    assert not failures, "\n".join(failures[:10])


@pytest.mark.parametrize("transport", ["h2", "chunked"])
@pytest.mark.parametrize("text_bytes", [30_000, 200_000])
def test_body_ended_by_trailers(ring, transport, text_bytes):
    # No body callback marks the end of the body (the trailers end it); the
    # contextId in the last pieces must still route it, also when it is long.
    ctx = f"{transport}-trailers-{text_bytes}"
    body = _late_context_body(ctx, text_bytes)
    chunks = [body[i:i + 8192] for i in range(0, len(body), 8192)]
    headers = [("content-type", "application/json")]
    trailers = [("x-trailer", "done")]
    if transport == "h2":
        status, raw = send_h2(ring.port, "/", headers, chunks, trailers=trailers)
    else:
        status, raw = send_chunked(ring.port, "/", headers, chunks, delay=0.001, trailers=trailers)
    got = report(status, raw)
    assert (got["body_sha256"], got["body_length"]) == (sha256(body), len(body))
    assert got["context_ids"] == [ctx]
    assert got["replica"] == where(ring, ctx)


def test_http2_body_without_context_id_finishes_in_trailers(ring):
    # A follow-up that names only its task: no contextId, nothing to mint,
    # so the filter reaches the end of the body, which over HTTP/2 with
    # trailers is the trailers callback, and must let the request go.
    doc = {"jsonrpc": "2.0", "id": 2, "method": "SendMessage",
           "params": {"message": {"messageId": "m-h2", "taskId": "task-never-seen",
                                  "role": "ROLE_USER", "parts": [{"text": "b" * 20_000}]}}}
    body = json.dumps(doc).encode()
    chunks = [body[i:i + 8192] for i in range(0, len(body), 8192)]
    before = ring.stats()
    status, raw = send_h2(ring.port, "/", [("content-type", "application/json"),
                                           ("x-context-id", "client-h2")], chunks,
                          trailers=[("x-trailer", "done")])
    got = report(status, raw)
    assert (got["body_sha256"], got["body_length"]) == (sha256(body), len(body))
    assert got["context_ids"] == ["client-h2"]
    # The filter read the body to its end and decided on the task id.
    delta = counter_delta(before, ring.stats())
    assert delta.get("task_unknown") == 1, delta


def test_http2_without_trailers(ring):
    ctx = "h2-plain-33aa"
    body = _late_context_body(ctx, 2_000)
    status, raw = send_h2(ring.port, "/a2a", [("content-type", "application/json")],
                          [body[:700], body[700:1500], body[1500:]])
    got = report(status, raw)
    assert (got["body_sha256"], got["context_ids"]) == (sha256(body), [ctx])


def test_http2_streams_interleaved_on_one_connection(ring):
    # Twenty requests paused at once on one connection, their bodies
    # arriving interleaved in 16-byte frames: each stream keeps its own
    # scan state and gets its own contextId.
    rng = random.Random(21)
    bindings = list(BINDINGS)
    sent = [exchange(rng, bindings[i % len(bindings)], f"h2-multi-{i:02d}") for i in range(20)]
    requests = [(ex.path, ex.headers, ex.body, [("x-trailer", "t")] if i % 2 else [])
                for i, ex in enumerate(sent)]
    answers = send_h2_interleaved(ring.port, requests)
    problems = []
    for ex, (status, raw) in zip(sent, answers):
        ex.status, ex.raw = status, raw
        ex.report = json.loads(raw) if status == 200 else None
        problems += ex.problems()
        if ex.report and ex.report["replica"] != where(ring, ex.context_id):
            problems.append(f"{ex.describe()}: landed on {ex.report['replica']}")
    assert not problems, "\n".join(problems)


def test_streaming_response_passes_through(ring):
    ctx = "sse-5e1d"
    doc = {"jsonrpc": "2.0", "id": 3, "method": "message/stream",
           "params": {"message": {"kind": "message", "messageId": "m-sse", "role": "user",
                                  "contextId": ctx, "parts": [{"kind": "text", "text": "hi"}]}}}
    ex = Exchange(path="/", body=json.dumps(doc).encode(), context_id=ctx,
                  headers=[("content-type", "application/json"), ("accept", "text/event-stream")])
    send_all(ring.port, [ex], 1)
    assert ex.status == 200
    events = [json.loads(line[6:]) for line in ex.raw.decode().splitlines()
              if line.startswith("data: ")]
    assert [e["event"] for e in events] == [0, 1, 2]
    assert {tuple(e["context_ids"]) for e in events} == {(ctx,)}
    assert events[0]["body_sha256"] == sha256(ex.body)


def test_body_far_over_the_scan_limit_is_never_413(ring):
    # 3 MiB, more than the route's 2 MiB request_body_buffer_limit: the
    # filter must stop holding the body at max_scan_bytes (256 KiB by
    # default), or Envoy would answer 413. The contextId at the end is
    # never seen.
    ctx = "beyond-scan-limit"
    body = _late_context_body(ctx, 3 << 20)
    ex = Exchange(path="/", body=body, headers=[("content-type", "application/json")])
    before = ring.stats()
    send_all(ring.port, [ex], 1)
    delta = counter_delta(before, ring.stats())
    assert ex.problems(expect_context_ids=[]) == []
    assert delta.get("scan_limit") == 1, delta


@pytest.mark.parametrize("first", [1_000, 200_000])
def test_a_burst_over_the_buffer_limit_is_never_413(ring, first):
    # While the filter holds the first bytes, Envoy reads the rest in one
    # burst (it had fallen behind the client). Envoy adds a burst to what
    # the filter holds before the filter sees it, so the listener's read
    # size, not only max_scan_bytes, decides whether that passes the limit.
    ctx = "burst-past-the-buffer"
    body = _late_context_body(ctx, 1_500_000)
    before = ring.stats()
    status, raw = post_in_a_burst(ring, body, first)
    assert status == 200, raw[:200]
    got = json.loads(raw)
    assert (got["body_sha256"], got["body_length"], got["context_ids"]) == (
        sha256(body), len(body), [])
    # The filter held and read the body up to its scan limit.
    delta = counter_delta(before, ring.stats())
    assert delta.get("scan_limit") == 1, delta


def test_first_turn_gets_a_minted_context_id(ring):
    # The shipped config mints: a first turn (no contextId, no taskId) gets a
    # UUID v4 contextId inserted into its message, and the same value as
    # the header; the rest of the body is unchanged.
    doc = {"jsonrpc": "2.0", "id": 4, "method": "SendMessage",
           "params": {"message": {"messageId": "m-first", "role": "ROLE_USER",
                                  "parts": [{"text": "hello"}]}, "configuration": {}}}
    body = json.dumps(doc).encode()
    ex, delta = _post_echoed(ring, body)
    got = ex.report
    minted = assert_minted(got, doc)
    assert len(minted) == 36 and minted[14] == "4", minted
    assert got["body_length"] == len(got["body"].encode())
    assert delta.get("minted") == 1, delta


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("past", [0, 1])
def test_a_first_turn_of_exactly_max_scan_bytes_is_minted(ring, past, framing):
    # HTTP/1.1 shows the body's last bytes without the end of the stream,
    # which follows in a call of its own. A first turn of exactly
    # max_scan_bytes, its content-length saying so or chunked, may end with
    # its last byte read, and is whole at the end: it is minted. One byte
    # more and the body goes on past the limit: it passes unchanged.
    scan = 262144
    assert f'"max_scan_bytes": {scan},' in (REPO / CONFIGS["ring"]).read_text()
    doc, body = first_turn_of(scan + past, 6, "m-edge")
    if framing == "length":
        ex, delta = _post_echoed(ring, body)
        got = ex.report
    else:
        before = ring.stats()
        pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
        got = report(*send_chunked(ring.port, "/", [("content-type", "application/json"),
                                                     ("x-echo-body", "1")], pieces))
        delta = counter_delta(before, ring.stats())
    if past:
        assert (got["context_ids"], got["body_sha256"]) == ([], sha256(body))
        assert delta.get("scan_limit") == 1, delta
        return
    assert_minted(got, doc)
    assert got["body_length"] == len(got["body"].encode()) == len(body) + 51
    assert delta.get("minted") == 1, delta


@pytest.mark.parametrize("transport", ["chunked", "h2", "h2-trailers", "h2-trailers-large"])
def test_minting_over_chunked_and_h2_uploads(ring, transport):
    # The minted contextId changes the body's length: over chunked HTTP/1.1
    # and HTTP/2 (with and without trailers) the upstream must still get a
    # complete, valid document with the contextId in the message.
    doc = {"jsonrpc": "2.0", "id": 5, "method": "message/send",
           "params": {"message": {"kind": "message", "messageId": f"m-{transport}", "role": "user",
                                  "parts": [{"kind": "text", "text": "first turn " * 50}]}}}
    if transport == "h2-trailers-large":
        # A long first turn in 8 KiB frames, ended by trailers.
        doc["params"]["message"]["parts"][0]["text"] = "first turn " * 6000
    body = json.dumps(doc).encode()
    piece = 8192 if transport == "h2-trailers-large" else 100
    pieces = [body[i:i + piece] for i in range(0, len(body), piece)]
    headers = [("content-type", "application/json"), ("x-echo-body", "1")]
    if transport == "chunked":
        status, raw = send_chunked(ring.port, "/", headers, pieces)
    else:
        trailers = [("x-trailer", "t")] if transport.startswith("h2-trailers") else []
        status, raw = send_h2(ring.port, "/", headers, pieces, trailers=trailers)
    got = report(status, raw)
    assert_minted(got, doc)
    assert got["body_length"] == len(got["body"].encode())


@pytest.fixture(scope="module")
def h2_window(start_envoy):
    """The shipped RING_HASH config with Envoy Gateway's HTTP/2 stream window
    (64 KiB) and, as there, no route buffer limit: an HTTP/2 stream's buffer
    limit is then its window. Not for the Wasm filter: this limit is below
    its documented max_scan_bytes-plus-one-read rule (README,
    max_scan_bytes), and Envoy answers 413."""
    if current_shell() == "wasm":
        pytest.skip(WASM_UNDER_A_WINDOW)
    return start_envoy(h2_window_config(CONFIGS["ring"]), name="h2-window")


@pytest.mark.parametrize("frames", ["across", "to"])
@pytest.mark.parametrize("context_at", ["inside", "past"])
def test_an_h2_body_whose_last_frame_passes_the_stream_limit_goes_through(
        h2_window, context_at, frames):
    # Four DATA frames are held, 60,000 bytes under the stream's 64 KiB
    # limit ("across") or exactly 65,536 up to it ("to": the body might end
    # there, so the module waits for one more frame); the last, with
    # END_STREAM, takes the body past it. The request is neither answered
    # 413 nor stalled, and arrives byte for byte, routed by a contextId 48 KB
    # in or 70 KB in (in the last frame). The dynamic module holds no more
    # than the stream's limit, and reads the frame that ends the body whole:
    # nothing is held after it. Envoy's ext_proc filter sends what it holds
    # with the chunk that ends the stream, past the limit: the server reads
    # the whole body.
    ctx = f"h2-window-{context_at}-{frames}"
    body = body_past_the_window(ctx, context_at == "inside")
    pieces = frames_past_the_window(body, *(HELD_ACROSS if frames == "across" else HELD_TO))
    before = h2_window.stats()
    status, raw = send_h2(h2_window.port, "/", [("content-type", "application/json")], pieces,
                          whole_frames=True)
    got = report(status, raw)
    delta = counter_delta(before, h2_window.stats())
    assert (got["body_sha256"], got["body_length"]) == (sha256(body), len(body))
    assert got["context_ids"] == [ctx], got["context_ids"]
    assert not delta.get("scan_limit"), delta


@pytest.mark.parametrize("ending", ["past_the_limit", "at_the_limit"])
def test_an_h2_first_turn_that_fills_the_stream_limit_is_minted(h2_window, ending):
    # past_the_limit: four frames hold 60,000 bytes, under the stream's
    # 64 KiB limit, and the fifth, with END_STREAM, takes the first turn to
    # 70,000 bytes; nothing is held after the frame that ends the body, so
    # the module reads it whole. at_the_limit: four frames of exactly
    # 65,536 bytes, the window and the stream's limit, then the end in an
    # empty DATA frame: the body might have gone on, so the module holds the
    # limit and waits (Envoy keeps the window open: the held body is not
    # above its limit), and the end decides it whole. Envoy's ext_proc
    # filter holds the body to the end itself. Minted either way, no 413.
    if ending == "past_the_limit":
        doc, body = first_turn_of(70_000, 9, "m-h2-past")
        pieces = frames_past_the_window(body, *HELD_ACROSS)
    else:
        doc, body = first_turn_of(H2_WINDOW, 8, "m-h2-edge")
        pieces = [body[i:i + 16_384] for i in range(0, len(body), 16_384)] + [b""]
    before = h2_window.stats()
    got = report(*send_h2(h2_window.port, "/", [("content-type", "application/json"),
                                                 ("x-echo-body", "1")], pieces, whole_frames=True))
    delta = counter_delta(before, h2_window.stats())
    assert_minted(got, doc)
    assert delta.get("minted") == 1, delta


def test_http2_duplicate_client_headers_collapse_to_the_body_value(ring):
    ctx = "h2-dup-headers"
    body = _late_context_body(ctx, 500)
    status, raw = send_h2(ring.port, "/", [("content-type", "application/json"),
                                           ("x-context-id", "one"), ("x-context-id", "two")],
                          [body[:300], body[300:]])
    got = report(status, raw)
    assert (got["context_ids"], got["body_sha256"]) == ([ctx], sha256(body))
    assert got["replica"] == where(ring, ctx)
