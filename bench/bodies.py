"""A2A JSON-RPC 0.3 `message/send` bodies of an exact size, with the
contextId either before the message's parts or after them.

The shape follows benches/scan.rs (one long text part of prose with the
escapes real text carries), so the host-side scanner figures and the Envoy
figures are about the same bytes."""

import json
import random
import uuid

SIZES = {"1k": 1024, "64k": 64 * 1024, "512k": 512 * 1024}
POSITIONS = ("first", "last")

_LINE = 'The agent should summarise the "quarterly report" and list open questions for the next turn.\n'


def context_ids(count, seed=6):
    """Deterministic UUID v4 strings (the upstreams accept only that shape)."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _document(context_id, position, text):
    message = {}
    if position == "first":
        message["contextId"] = context_id
    message.update({"kind": "message", "messageId": "1c0e4b2a", "role": "user",
                    "parts": [{"kind": "text", "text": text}]})
    if position == "last":
        message["contextId"] = context_id
    return {"jsonrpc": "2.0", "id": "b7d5", "method": "message/send",
            "params": {"configuration": {"blocking": True, "acceptedOutputModes": ["text/plain"]},
                       "message": message}}


def _encode(doc):
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def body(size, context_id, position):
    """A valid document of exactly `size` bytes."""
    if position not in POSITIONS:
        raise ValueError(position)
    overhead = len(_encode(_document(context_id, position, "")))
    room = size - overhead
    if room < 0:
        raise ValueError(f"{size} bytes cannot hold the envelope ({overhead} bytes)")
    text = (_LINE * (room // len(_LINE) + 1))
    # Each character costs one byte except '"' and '\n' (two, escaped): trim
    # characters until the encoded document fits, then pad with spaces.
    encoded_len = lambda t: len(_encode(_document(context_id, position, t)))  # noqa: E731
    text = text[:room]
    while encoded_len(text) > size:
        text = text[:-(encoded_len(text) - size)] if encoded_len(text) - size > 1 else text[:-1]
    text += " " * (size - encoded_len(text))
    data = _encode(_document(context_id, position, text))
    if len(data) != size:
        raise AssertionError(f"body is {len(data)} bytes, wanted {size}")
    parsed = json.loads(data)
    if parsed["params"]["message"]["contextId"] != context_id:
        raise AssertionError("contextId lost")
    return data


if __name__ == "__main__":
    # python3 bench/bodies.py SIZE POSITION COUNT: a JSON list of COUNT bodies
    # (the V8 bench, bench/wasm_stream.mjs, takes the same bytes from here).
    import sys

    size_name, position, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps([body(SIZES[size_name], ctx, position).decode()
                      for ctx in context_ids(count)]))
