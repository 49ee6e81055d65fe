"""Differential check: the filter's contextId against the agents' own parsers.

Thousands of generated message sends, ordinary and odd-but-valid (key
order, escapes, repeated members, nulls, whitespace, unicode, numbers,
nesting), go through the core in one process (the `route` example of
crates/core, which prints the outcome, the hash header and the forwarded
body). Each forwarded body is then parsed the way the a2a-sdk agents
(`a2a-sdk[http-server]` of requirements.txt, as demo/agent.py serves it)
parse it:

- JSON-RPC 1.0 (`SendMessage`): Starlette's `request.json()` (Python's
  json), the JSON-RPC envelope checks, then protobuf's
  `json_format.ParseDict` into `SendMessageRequest`;
- JSON-RPC 0.3 (`message/send`, the SDK's 0.3 compatibility layer): the
  pydantic model `SendMessageRequest.model_validate` of that JSON;
- REST 1.0 (`/message:send`): protobuf's `json_format.Parse` of the bytes;
- REST 0.3 (`/v1/message:send`): the same into the 0.3 proto;
- gRPC 1.0 and 0.3 (`SendMessage`): protobuf's binary parser
  (`SendMessageRequest.FromString`, what grpcio calls) on the first frame.

The agent files the turn under the message's `context_id` when it is not
empty, and mints its own otherwise. For every body the agent accepts, the
rule is: either the filter set a header whose value is the contextId the
agent files the turn under (so the conversation's replica keeps it), or it
set none and the agent has a contextId of its own from the body (the turn
goes by normal load balancing, as without the filter). A first turn the
agent will give a fresh contextId must be minted by the filter, or it
lands where the next turn will not. A header must also be a valid HTTP
field value (RFC 9110 section 5.5: no leading or trailing whitespace, no
control character), or an HTTP/2 upstream rejects the request: the README
promises the contextId itself when it is visible ASCII with inner spaces
only and no `%`, else its percent-encoding, and the check holds the
filter to exactly that value.

Disagreements are reported by category (the kind of oddity the body was
generated with). A category known to disagree is marked
`xfail(strict=True)` with the reason, so that its test turns into a
failure when a fix lands and the mark must go. Run the table on its own:

    .venv/bin/python tests/test_differential.py
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from google.protobuf import json_format

REPO = Path(__file__).resolve().parent.parent

# Per category: how many bodies of each binding.
BODIES_PER_BINDING = 150

HEADER = "x-context-id"

# Categories that disagree today, each with why (none now; a category
# added here runs as xfail(strict=True) until it agrees).
KNOWN: dict[str, str] = {}


# ---------------------------------------------------------------------------
# Bodies
# ---------------------------------------------------------------------------


class Obj:
    """A JSON object as a list of members, so that names may repeat."""

    def __init__(self, *members):
        self.members = list(members)

    def get(self, key):
        return next((v for k, v in self.members if k == key), None)

    def set(self, key, value):
        for i, (k, _) in enumerate(self.members):
            if k == key:
                self.members[i] = (key, value)
                return
        self.members.append((key, value))


class Style:
    """How a document is written: whitespace, escapes, number forms."""

    def __init__(self, rng: random.Random, spaces=0.0, escapes=0.0, ascii_only=False):
        self.rng = rng
        self.spaces = spaces
        self.escapes = escapes
        self.ascii_only = ascii_only

    def ws(self):
        out = ""
        while self.rng.random() < self.spaces:
            out += self.rng.choice(" \t\r\n")
        return out

    def string(self, s: str) -> str:
        out = ['"']
        for c in s:
            code = ord(c)
            if c in '"\\' or code < 0x20 or self.rng.random() < self.escapes or (
                self.ascii_only and code > 0x7E
            ):
                short = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "/": "\\/"}
                if c in short and self.rng.random() < 0.5:
                    out.append(short[c])
                elif code > 0xFFFF:
                    code -= 0x10000
                    out.append("\\u%04x\\u%04X" % (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)))
                else:
                    out.append(("\\u%04x" if self.rng.random() < 0.5 else "\\u%04X") % code)
            else:
                out.append(c)
        out.append('"')
        return "".join(out)

    def dump(self, v) -> str:
        w = self.ws
        if isinstance(v, Obj):
            inner = ",".join(
                f"{w()}{self.string(k)}{w()}:{w()}{self.dump(x)}{w()}" for k, x in v.members
            )
            return "{" + (inner or w()) + "}"
        if isinstance(v, list):
            return "[" + (",".join(f"{w()}{self.dump(x)}{w()}" for x in v) or w()) + "]"
        if isinstance(v, str):
            return self.string(v)
        if isinstance(v, Raw):
            return v.text
        return json.dumps(v)


class Raw:
    """A JSON token written as it is (odd number forms)."""

    def __init__(self, text):
        self.text = text


def ident(rng: random.Random) -> str:
    return "%08x-%04x-4%03x-a%03x-%012x" % tuple(
        rng.getrandbits(n) for n in (32, 16, 12, 12, 48)
    )


UNICODE_IDS = ["ctx-\u00e9t\u00e9", "\u4e2d\u6587-ctx", "emoji-\U0001F600", "\u2028sep", "\uffff-end"]
ODD_NUMBERS = ["0", "-0", "1e3", "1E+2", "-1.5e-3", "123456789012345678901234567890", "0.0", "1e400"]
TEXTS = ["hi", 'say "contextId":"decoy"', "line\nbreak \\ back", '{"contextId":"in-text"}']


def message(binding: str, rng: random.Random, ctx) -> Obj:
    """A user message of the binding's shape; `ctx` is the contextId member
    value (None: no member)."""
    if binding == "rpc03":
        m = Obj(
            ("kind", "message"),
            ("messageId", ident(rng)),
            ("role", "user"),
            ("parts", [Obj(("kind", "text"), ("text", rng.choice(TEXTS)))]),
        )
    elif binding == "rest03":
        m = Obj(
            ("messageId", ident(rng)),
            ("role", "ROLE_USER"),
            ("content", [Obj(("text", rng.choice(TEXTS)))]),
        )
    else:
        m = Obj(
            ("messageId", ident(rng)),
            ("role", "ROLE_USER"),
            ("parts", [Obj(("text", rng.choice(TEXTS)))]),
        )
    if ctx is not None:
        m.members.insert(rng.randrange(len(m.members) + 1), ("contextId", ctx))
    return m


def envelope(binding: str, rng: random.Random, msg: Obj) -> Obj:
    if binding in ("rpc10", "rpc03"):
        method = rng.choice(
            ["SendMessage", "SendStreamingMessage"]
            if binding == "rpc10"
            else ["message/send", "message/stream"]
        )
        params = Obj(("message", msg))
        if rng.random() < 0.5:
            params.members.insert(0, ("configuration", Obj(("acceptedOutputModes", ["text/plain"]))))
        return Obj(("jsonrpc", "2.0"), ("id", rng.choice([1, "r-1", None])), ("method", method), ("params", params))
    doc = Obj(("message", msg))
    if rng.random() < 0.5:
        doc.members.append(("configuration", Obj(("blocking", True))))
    return doc


PATHS = {
    "rpc10": "/",
    "rpc03": "/",
    "rest10": "/message:send",
    "rest03": "/v1/message:send",
    "grpc10": "/lf.a2a.v1.A2AService/SendMessage",
    "grpc03": "/a2a.v1.A2AService/SendMessage",
}

BINDINGS = list(PATHS)


def shuffle_members(rng: random.Random, v):
    if isinstance(v, Obj):
        rng.shuffle(v.members)
        for _, x in v.members:
            shuffle_members(rng, x)
    elif isinstance(v, list):
        for x in v:
            shuffle_members(rng, x)


def generate(category: str, binding: str, rng: random.Random):
    """One body: (path, bytes), or None when the category does not apply
    to the binding."""
    if binding.startswith("grpc"):
        made = generate_grpc(category, binding, rng)
        return None if made is None else (PATHS[binding], made)
    if category == "grpc_empty_context_id":
        return None
    style = Style(rng)
    path = PATHS[binding]
    ctx = ident(rng)
    if category == "ordinary":
        doc = envelope(binding, rng, message(binding, rng, ctx))
    elif category == "first_turn":
        doc = envelope(binding, rng, message(binding, rng, None))
    elif category == "key_order":
        doc = envelope(binding, rng, message(binding, rng, rng.choice([ctx, None])))
        shuffle_members(rng, doc)
    elif category == "escapes":
        style = Style(rng, escapes=rng.choice([0.2, 0.6, 1.0]))
        doc = envelope(binding, rng, message(binding, rng, ctx + rng.choice(["", "/x", '"q"', "\\b"])))
    elif category == "json_whitespace":
        style = Style(rng, spaces=rng.choice([0.3, 0.7]))
        doc = envelope(binding, rng, message(binding, rng, rng.choice([ctx, None])))
    elif category == "unicode":
        style = Style(rng, ascii_only=rng.random() < 0.5)
        doc = envelope(binding, rng, message(binding, rng, rng.choice(UNICODE_IDS) + ctx[:4]))
    elif category == "numbers":
        msg = message(binding, rng, rng.choice([ctx, None]))
        msg.set("metadata", Obj(*((f"n{i}", Raw(rng.choice(ODD_NUMBERS))) for i in range(4))))
        doc = envelope(binding, rng, msg)
        doc.members.insert(0, ("extra", Raw(rng.choice(ODD_NUMBERS[:-1]))))
    elif category in ("nesting", "deep_nesting"):
        # Each round adds one level (an array) or two (an object and the
        # array in it): up to 120 levels in all, or past serde_json's 128
        # (which the scanner reads beyond, as Python's json does) up to
        # about 300.
        levels = rng.randrange(1, 110) if category == "nesting" else rng.randrange(125, 280)
        deep = "leaf"
        for i in range(levels * 2 // 3):
            deep = Obj(("contextId", f"deep-{i}"), ("x", [deep])) if i % 2 else [deep, i]
        msg = message(binding, rng, rng.choice([ctx, None]))
        msg.set("metadata", Obj(("nested", deep), ("contextId", "in-metadata")))
        doc = envelope(binding, rng, msg)
    elif category == "decoys":
        msg = message(binding, rng, rng.choice([ctx, None]))
        msg.set("metadata", Obj(("contextId", "decoy-metadata")))
        msg.set("extensions", ["contextId", "decoy"])
        doc = envelope(binding, rng, msg)
        doc.members.insert(rng.randrange(len(doc.members) + 1), ("contextId", "decoy-top"))
    elif category == "long_values":
        doc = envelope(binding, rng, message(binding, rng, ctx * rng.choice([1, 7, 8, 30])))
    elif category == "control_chars":
        doc = envelope(binding, rng, message(binding, rng, ctx[:8] + rng.choice(["\x01", "\x7f", "\n", "\t"]) + "x"))
    elif category == "null_context_id":
        doc = envelope(binding, rng, message(binding, rng, None))
        doc.get("params" if binding.startswith("rpc") else "message")
        msg = doc.get("params").get("message") if binding.startswith("rpc") else doc.get("message")
        msg.members.insert(rng.randrange(len(msg.members) + 1), ("contextId", Raw("null")))
    elif category == "empty_context_id":
        doc = envelope(binding, rng, message(binding, rng, ""))
    elif category == "padded_context_id":
        pad = rng.choice([" ", "  ", "\u00a0", " \t"])
        value = rng.choice([pad + ctx, ctx + pad, pad + ctx + pad])
        doc = envelope(binding, rng, message(binding, rng, value))
    elif category == "duplicate_context_id":
        msg = message(binding, rng, ctx)
        msg.members.insert(rng.randrange(len(msg.members) + 1), ("contextId", ident(rng)))
        doc = envelope(binding, rng, msg)
    elif category == "duplicate_message":
        doc = envelope(binding, rng, message(binding, rng, ctx))
        holder = doc.get("params") if binding.startswith("rpc") else doc
        holder.members.insert(
            rng.randrange(len(holder.members) + 1), ("message", message(binding, rng, rng.choice([ident(rng), None])))
        )
    elif category == "duplicate_params":
        doc = envelope(binding, rng, message(binding, rng, ctx))
        if binding.startswith("rpc"):
            doc.members.insert(
                rng.randrange(len(doc.members) + 1), ("params", Obj(("message", message(binding, rng, ident(rng)))))
            )
        else:
            doc.members.append(("message", message(binding, rng, ident(rng))))
    elif category == "both_spellings":
        msg = message(binding, rng, None)
        pair = [("contextId", ctx), ("context_id", ident(rng))]
        rng.shuffle(pair)
        msg.members[1:1] = pair
        doc = envelope(binding, rng, msg)
    elif category == "unknown_fields":
        msg = message(binding, rng, rng.choice([ctx, None]))
        msg.set("x-unknown", Obj(("contextId", "decoy"), ("message", Obj(("contextId", "decoy")))))
        doc = envelope(binding, rng, msg)
        doc.members.insert(rng.randrange(len(doc.members) + 1), ("unknownTop", [Obj(("contextId", "decoy"))]))
    elif category == "percent_encoded_path":
        if not binding.startswith("rest"):
            return None
        path = path.replace(":", rng.choice(["%3A", "%3a"]))
        doc = envelope(binding, rng, message(binding, rng, rng.choice([ctx, None])))
    else:
        raise ValueError(category)
    return path, style.dump(doc).encode()


CATEGORIES = [
    "ordinary",
    "first_turn",
    "key_order",
    "escapes",
    "json_whitespace",
    "unicode",
    "numbers",
    "nesting",
    "deep_nesting",
    "decoys",
    "long_values",
    "control_chars",
    "null_context_id",
    "empty_context_id",
    "grpc_empty_context_id",
    "padded_context_id",
    "duplicate_context_id",
    "duplicate_message",
    "duplicate_params",
    "both_spellings",
    "percent_encoded_path",
    "unknown_fields",
]


# gRPC: the A2A protos' field numbers (SendMessageRequest.message is 2 in
# 1.0, `request` = 1 in 0.3; Message: message_id 1, context_id 2, role 4,
# parts/content 5 with Part.text = 1).


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def pb_len(field: int, value: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(value)) + value


def grpc_message(rng: random.Random, ctx, shuffle=False) -> bytes:
    fields = [
        pb_len(1, ident(rng).encode()),
        varint(4 << 3) + varint(1),
        pb_len(5, pb_len(1, rng.choice(TEXTS).encode())),
    ]
    if ctx is not None:
        fields.insert(1, pb_len(2, ctx.encode()))
    if shuffle:
        rng.shuffle(fields)
    return b"".join(fields)


def grpc_frame(binding: str, *messages: bytes, extra=b"") -> bytes:
    field = 2 if binding == "grpc10" else 1
    request = b"".join(pb_len(field, m) for m in messages) + extra
    return b"\0" + len(request).to_bytes(4, "big") + request


def generate_grpc(category: str, binding: str, rng: random.Random):
    ctx = ident(rng)
    if category == "ordinary":
        return grpc_frame(binding, grpc_message(rng, ctx))
    if category == "first_turn":
        return grpc_frame(binding, grpc_message(rng, None))
    if category == "key_order":
        return grpc_frame(binding, grpc_message(rng, rng.choice([ctx, None]), shuffle=True))
    if category == "unicode":
        return grpc_frame(binding, grpc_message(rng, rng.choice(UNICODE_IDS) + ctx[:4]))
    if category == "long_values":
        return grpc_frame(binding, grpc_message(rng, ctx * rng.choice([1, 7, 8, 30])))
    if category == "control_chars":
        return grpc_frame(binding, grpc_message(rng, ctx[:8] + rng.choice(["\x01", "\x7f", "\n"]) + "x"))
    if category == "grpc_empty_context_id":
        # proto3 leaves an empty string out; a client may still send it.
        return grpc_frame(binding, grpc_message(rng, ""))
    if category == "padded_context_id":
        return grpc_frame(binding, grpc_message(rng, rng.choice([" ", "\t"]) + ctx + rng.choice(["", " "])))
    if category == "duplicate_context_id":
        return grpc_frame(binding, grpc_message(rng, ctx) + pb_len(2, ident(rng).encode()))
    if category == "duplicate_message":
        # Protobuf merges a repeated message field: a later context_id wins.
        return grpc_frame(binding, grpc_message(rng, ctx), grpc_message(rng, ident(rng)))
    if category == "unknown_fields":
        unknown = varint(15 << 3) + varint(rng.getrandbits(40)) + varint(9 << 3 | 5) + bytes(4)
        unknown += pb_len(12, grpc_message(rng, "decoy"))
        return grpc_frame(binding, grpc_message(rng, rng.choice([ctx, None])) + unknown, extra=unknown)
    return None


# ---------------------------------------------------------------------------
# The agents' parsers (a2a-sdk, as demo/agent.py serves it)
# ---------------------------------------------------------------------------


class Rejected(Exception):
    """The agent answers the request with an error: it files nothing."""


def agent_context(binding: str, body: bytes) -> str:
    """The contextId the agent reads from the message ('' when it will mint
    its own), or Rejected."""
    from a2a.compat.v0_3 import a2a_v0_3_pb2 as pb03
    from a2a.compat.v0_3 import types as types03
    from a2a.types import a2a_pb2

    try:
        if binding in ("rpc10", "rpc03"):
            # Starlette's Request.json() is json.loads of the body bytes.
            doc = json.loads(body)
            if not isinstance(doc, dict) or doc.get("jsonrpc") != "2.0":
                raise Rejected("not a JSON-RPC 2.0 request")
            method = doc.get("method")
            if binding == "rpc03":
                model = {
                    "message/send": types03.SendMessageRequest,
                    "message/stream": types03.SendStreamingMessageRequest,
                }[method]
                return model.model_validate(doc).params.message.context_id or ""
            if method not in ("SendMessage", "SendStreamingMessage"):
                raise Rejected(f"method {method!r}")
            request = json_format.ParseDict(
                doc.get("params", {}), a2a_pb2.SendMessageRequest(), ignore_unknown_fields=True
            )
            return request.message.context_id
        if binding.startswith("grpc"):
            if len(body) < 5 or body[0] != 0 or int.from_bytes(body[1:5], "big") != len(body) - 5:
                raise Rejected("not one uncompressed gRPC frame")
            if binding == "grpc10":
                return a2a_pb2.SendMessageRequest.FromString(body[5:]).message.context_id
            return pb03.SendMessageRequest.FromString(body[5:]).request.context_id
        if binding == "rest10":
            request = json_format.Parse(body, a2a_pb2.SendMessageRequest(), ignore_unknown_fields=True)
            return request.message.context_id
        request = json_format.Parse(body, pb03.SendMessageRequest(), ignore_unknown_fields=True)
        return getattr(request, "request").context_id
    except Rejected:
        raise
    except Exception as e:  # every parser error is an error answer
        raise Rejected(f"{type(e).__name__}: {e}") from e


def field_value_ok(value: str) -> bool:
    """RFC 9110 section 5.5 field value (visible ASCII, obs-text, inner
    SP/HTAB), as HTTP/2 stacks check it (RFC 9113 section 8.2.1)."""
    if not value or value[0] in " \t" or value[-1] in " \t":
        return False
    return all(c in " \t" or (0x21 <= ord(c) <= 0x7E) or ord(c) >= 0x80 for c in value)


def header_value(context_id: str) -> str:
    """The header the README promises for a contextId: the id itself when
    it is visible ASCII with spaces only inside and no `%`, else its UTF-8
    bytes with every byte outside `!`..`~`, and `%`, written `%XX`."""
    raw = context_id.encode("utf-8", "surrogatepass")
    plain = lambda b: 0x21 <= b <= 0x7E and b != 0x25  # noqa: E731
    if raw and plain(raw[0]) and plain(raw[-1]) and all(plain(b) or b == 0x20 for b in raw):
        return context_id
    return "".join(chr(b) if plain(b) else "%%%02X" % b for b in raw)


# ---------------------------------------------------------------------------
# The core, through crates/core/examples/route.rs
# ---------------------------------------------------------------------------


def route_binary() -> Path:
    target = REPO / os.environ.get("CARGO_TARGET_DIR", "target")
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "a2a-affinity-core", "--example", "route"],
        cwd=REPO,
        check=True,
    )
    return target / "debug" / "examples" / "route"


def run_core(requests):
    """Each (path, body) through the core; a list of its JSON answers."""
    records = bytearray()
    for path, body in requests:
        content_type = "application/grpc" if "A2AService" in path else "application/json"
        records += f"POST {path} {content_type} {len(body)}\n".encode() + body
    out = subprocess.run(
        [str(route_binary())], input=bytes(records), capture_output=True, check=True, timeout=300
    ).stdout
    answers = [json.loads(line) for line in out.decode().split("\n") if line]
    assert len(answers) == len(requests)
    return answers


# ---------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------


def judge(binding, body, answer):
    """'' when the filter and the agent agree, else what disagrees; None
    when the agent rejects the body as sent."""
    try:
        agent_context(binding, body)
    except Rejected:
        return None
    forwarded = bytes.fromhex(answer["body"]) if answer["body"] else body
    header = answer["header"]
    try:
        filed = agent_context(binding, forwarded)
    except Rejected as e:
        return f"the forwarded body is rejected by the agent: {e}"
    if header is None:
        if filed == "":
            return f"no header and no mint ({answer['outcome']}): the agent mints its own contextId"
        return ""
    if not field_value_ok(header):
        return f"header {header!r} is not a valid HTTP field value"
    if filed == "":
        return f"header {header!r} but the agent mints its own contextId"
    if header == header_value(filed):
        return ""
    return f"routed by {header!r}, the agent files under {filed!r}"


@functools.lru_cache(maxsize=1)
def results():
    """category -> (bodies the agent accepts, [(binding, body, why)])."""
    rng = random.Random(18)
    cases = []
    for category in CATEGORIES:
        for binding in BINDINGS:
            for _ in range(BODIES_PER_BINDING):
                made = generate(category, binding, rng)
                if made is not None:
                    cases.append((category, binding, made[0], made[1]))
    answers = run_core([(path, body) for _, _, path, body in cases])
    out = {c: [0, []] for c in CATEGORIES}
    for (category, binding, _, body), answer in zip(cases, answers):
        why = judge(binding, body, answer)
        if why is None:
            continue
        out[category][0] += 1
        if why:
            out[category][1].append((binding, body, why))
    return out


def describe(category, accepted, disagreements):
    by_binding = defaultdict(int)
    for binding, _, _ in disagreements:
        by_binding[binding] += 1
    lines = [f"{category}: {len(disagreements)} of {accepted} accepted bodies disagree {dict(by_binding)}"]
    for binding, body, why in disagreements[:3]:
        lines.append(f"  {binding}: {why}\n    {body[:300]!r}")
    return "\n".join(lines)


@pytest.mark.parametrize(
    "category",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN[c])) if c in KNOWN else c
        for c in CATEGORIES
    ],
)
def test_the_filter_routes_where_the_agent_files_the_turn(category):
    accepted, disagreements = results()[category]
    # Every category has bodies the agents accept, or it checks nothing.
    assert accepted >= BODIES_PER_BINDING // 2, f"{category}: only {accepted} bodies accepted"
    assert not disagreements, describe(category, accepted, disagreements)


def test_the_check_sees_a_disagreement_when_there_is_one():
    """The judge itself: a header that is not where the agent files the
    turn, a first turn left unminted and a padded header are caught."""
    body = b'{"message":{"messageId":"m","role":"ROLE_USER","parts":[],"contextId":"c-1"}}'
    first = b'{"message":{"messageId":"m","role":"ROLE_USER","parts":[]}}'
    keep = {"outcome": "x", "body": None}
    assert judge("rest10", body, {**keep, "header": "c-1"}) == ""
    assert judge("rest10", body, {**keep, "header": "c-2"}).startswith("routed by")
    assert judge("rest10", body, {**keep, "header": None}) == ""
    assert "mints its own" in judge("rest10", first, {**keep, "header": None})
    assert "field value" in judge("rest10", body, {**keep, "header": " c-1"})
    assert judge("rest10", b"{", {**keep, "header": "c-1"}) is None
    padded = body.replace(b'"c-1"', b'" c-1"')
    assert judge("rest10", padded, {**keep, "header": "%20c-1"}) == ""
    assert judge("rest10", padded, {**keep, "header": "%20c%2D1"}).startswith("routed by")


def test_header_values_follow_the_readme():
    assert header_value("c-1") == "c-1"
    assert header_value("a b") == "a b"
    assert header_value(" padded") == "%20padded"
    assert header_value("caf\u00e9") == "caf%C3%A9"
    assert header_value("50%") == "50%25"
    assert header_value("tab\tx") == "tab%09x"


if __name__ == "__main__":
    for category, (accepted, disagreements) in results().items():
        mark = f"  [{KNOWN[category]}]" if category in KNOWN else ""
        print(describe(category, accepted, disagreements) if disagreements else f"{category}: 0 of {accepted}{mark}")
        if disagreements and mark:
            print(mark)
