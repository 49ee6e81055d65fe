"""Envoy alone, without the filter: the shipped route and clusters keep a
conversation on one replica when the client sets `x-context-id` itself, and
a contextId that is only in the body is not seen (every request falls back
to the source-address hash). This pins what the filter adds."""

import json
import random

import pytest

from a2a_bodies import context_ids, exchange
from e2e_harness import affinity, predict_hosts, send_all, send_chunked, send_h2, sha256

CONFIGS = {"ring": "envoy/envoy.yaml", "maglev": "envoy/envoy-maglev.yaml"}
CONTEXTS = 300


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def envoy_alone(request, start_envoy):
    return start_envoy(CONFIGS[request.param], name=f"alone-{request.param}", with_filter=False)


def test_client_header_keeps_each_context_on_one_replica(envoy_alone, upstreams):
    rng = random.Random(11)
    ctxs = context_ids(rng, CONTEXTS)
    sent = [exchange(rng, "jsonrpc-1.0 SendMessage", ctx, [("x-context-id", ctx)])
            for _ in range(2) for ctx in ctxs]
    send_all(envoy_alone.port, sent)
    problems = [p for ex in sent for p in ex.problems()]
    assert not problems, "\n".join(problems[:20])
    seen = affinity(sent, upstreams.names)
    assert seen["contexts"] == CONTEXTS
    assert seen["split_contexts"] == []
    # Each of the three replicas holds a fair part of the conversations.
    assert min(seen["contexts_per_replica"].values()) >= CONTEXTS * 0.15, seen["contexts_per_replica"]
    predicted = predict_hosts(envoy_alone, ctxs)
    assert {c: upstreams.by_address[predicted[c]] for c in ctxs} == seen["replica_of"]


def test_body_only_context_is_invisible_to_envoy_alone(envoy_alone, upstreams):
    rng = random.Random(12)
    sent = [exchange(rng, "rest-1.0 /message:send", ctx) for ctx in context_ids(rng, 60)]
    send_all(envoy_alone.port, sent)
    problems = [p for ex in sent for p in ex.problems(expect_context_ids=[])]
    assert not problems, "\n".join(problems[:20])
    # All requests come from 127.0.0.1: the source-IP fallback sends them all
    # to one replica, whatever their contextId.
    landed = {ex.report["replica"] for ex in sent}
    assert len(landed) == 1, landed


def test_raw_clients_deliver_the_body_intact(envoy_alone):
    # The chunked and h2c clients the filter tests rely on, checked without
    # the filter: pieces, trailers and the client header arrive unchanged.
    body = b'{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"contextId":"c-raw"}}}'
    pieces = [body[i:i + 5] for i in range(0, len(body), 5)]
    headers = [("content-type", "application/json"), ("x-context-id", "c-raw")]
    status, raw = send_chunked(envoy_alone.port, "/", headers, pieces, delay=0.001)
    got = json.loads(raw)
    assert status == 200
    assert (got["body_sha256"], got["context_ids"], got["chunked"]) == (sha256(body), ["c-raw"], True)
    status, raw = send_h2(envoy_alone.port, "/", headers, pieces, trailers=[("x-trailer", "t")])
    got = json.loads(raw)
    assert status == 200
    assert (got["body_sha256"], got["context_ids"]) == (sha256(body), ["c-raw"])
