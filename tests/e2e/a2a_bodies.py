"""A2A request bodies for every binding the filter reads, shaped as the
a2a-sdk clients send them (see the README table "What it reads"), with key order,
whitespace, content type and text varied per request from a seeded RNG."""

import json
import uuid

from e2e_harness import Exchange, counter_delta, send_all

CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "application/a2a+json"]
# A contextId-looking string inside a text part: the filter must ignore it.
DECOY = '{"contextId":"decoy-in-text"}'


def _shuffled(rng, pairs):
    pairs = list(pairs)
    rng.shuffle(pairs)
    return dict(pairs)


def _text(rng):
    words = ["turn", "context", "agent", "replica", "naïve", "日本", "x" * 40]
    text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 60)))
    if rng.random() < 0.1:
        text += " " + DECOY
    return text


def _encode(rng, doc):
    compact = rng.random() < 0.5
    return json.dumps(doc, separators=(",", ":") if compact else (", ", ": "),
                      ensure_ascii=rng.random() < 0.5).encode()


def jsonrpc_03(rng, ctx):
    message = _shuffled(rng, [
        ("contextId", ctx), ("kind", "message"), ("messageId", str(uuid.UUID(int=rng.getrandbits(128)))),
        ("parts", [{"kind": "text", "text": _text(rng)}]), ("role", "user"),
    ])
    params = _shuffled(rng, [("configuration", {"blocking": True}), ("message", message)])
    doc = _shuffled(rng, [("jsonrpc", "2.0"), ("id", rng.randint(1, 10**6)),
                          ("method", "message/send"), ("params", params)])
    return rng.choice(["/", "/a2a"]), doc, [("a2a-version", "0.3")]


def jsonrpc_10(rng, ctx):
    message = _shuffled(rng, [
        ("messageId", str(uuid.UUID(int=rng.getrandbits(128)))), ("contextId", ctx),
        ("role", "ROLE_USER"), ("parts", [{"text": _text(rng)}]),
    ])
    params = _shuffled(rng, [("message", message), ("configuration", {})])
    doc = _shuffled(rng, [("method", "SendMessage"), ("params", params),
                          ("id", str(rng.randint(1, 10**6))), ("jsonrpc", "2.0")])
    return rng.choice(["/", "/a2a"]), doc, [("a2a-version", "1.0")]


def rest_03_request(rng, ctx):
    # a2a-sdk 0.3's REST client: key `request`, snake_case fields.
    request = _shuffled(rng, [
        ("message_id", str(uuid.UUID(int=rng.getrandbits(128)))), ("context_id", ctx),
        ("role", "ROLE_USER"), ("content", [{"text": _text(rng)}]),
    ])
    doc = _shuffled(rng, [("request", request), ("configuration", {"blocking": True})])
    return "/v1/message:send", doc, [("a2a-version", "0.3")]


def rest_03_message(rng, ctx):
    message = _shuffled(rng, [
        ("messageId", str(uuid.UUID(int=rng.getrandbits(128)))), ("contextId", ctx),
        ("role", "ROLE_USER"), ("content", [{"text": _text(rng)}]),
    ])
    doc = _shuffled(rng, [("message", message), ("configuration", {"blocking": True})])
    return "/v1/message:send", doc, [("a2a-version", "0.3")]


def _rest_10(rng, ctx):
    message = _shuffled(rng, [
        ("messageId", str(uuid.UUID(int=rng.getrandbits(128)))), ("contextId", ctx),
        ("role", "ROLE_USER"), ("parts", [{"text": _text(rng)}]),
    ])
    return _shuffled(rng, [("message", message), ("configuration", {})])


def rest_10(rng, ctx):
    return "/message:send", _rest_10(rng, ctx), [("a2a-version", "1.0")]


def rest_tenant(rng, ctx):
    return "/tenant-a/message:send", _rest_10(rng, ctx), [("a2a-version", "1.0")]


BINDINGS = {
    "jsonrpc-0.3 message/send": jsonrpc_03,
    "jsonrpc-1.0 SendMessage": jsonrpc_10,
    "rest-0.3 /v1/message:send request": rest_03_request,
    "rest-0.3 /v1/message:send message": rest_03_message,
    "rest-1.0 /message:send": rest_10,
    "rest-1.0 /tenant-a/message:send": rest_tenant,
}


def exchange(rng, binding, ctx, extra_headers=()):
    path, doc, headers = BINDINGS[binding](rng, ctx)
    body = _encode(rng, doc)
    headers = [("content-type", rng.choice(CONTENT_TYPES)), *headers, *extra_headers]
    return Exchange(path=path, body=body, headers=headers, context_id=ctx, tag=binding)


def context_ids(rng, n, prefix="ctx"):
    """Distinct contextIds: mostly UUIDs as SDKs mint them, some free-form."""
    out = []
    for i in range(n):
        if i % 5 == 4:
            out.append(f"{prefix}-{i}-{rng.getrandbits(32):08x}")
        else:
            out.append(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
    return out


def send_rounds(envoy, rng, bindings, ctxs, rounds=2):
    """A request of every binding for every contextId, `rounds` times over,
    shuffled, sent through `envoy`: (the exchanges, the filter's counters'
    growth)."""
    sent = [exchange(rng, b, ctx) for _ in range(rounds) for b in bindings for ctx in ctxs]
    rng.shuffle(sent)
    before = envoy.stats()
    send_all(envoy.port, sent)
    return sent, counter_delta(before, envoy.stats())
