"""How the filter sees a body that arrives in pieces, read from Envoy's own
trace log of the HTTP filter chain: each piece reaches the filter as its own
data callback, the filter holds the request (StopIterationAndBuffer) only
until the contextId's value is complete, then continues, and the rest of the
body streams through without being held."""

import re

import pytest

from e2e_harness import send_chunked, sha256

# Envoy's FilterDataStatus values in "decode data called: ... status=N".
CONTINUE, STOP_AND_BUFFER = 0, 1


@pytest.fixture(scope="module")
def traced(start_envoy):
    return start_envoy("envoy/envoy.yaml", name="traced", concurrency=1,
                       extra_args=["--component-log-level", "http:trace"])


def wasm_data_statuses(envoy, marker_path):
    """Statuses the Wasm filter returned for each data callback of the one
    stream whose request line had marker_path."""
    log = envoy.log.read_text(errors="replace")
    # The request headers are dumped on the lines after the one that names
    # the stream.
    stream = last = None
    for line in log.splitlines():
        m = re.search(r'"StreamId":"(\d+)"', line)
        if m:
            last = m.group(1)
        elif marker_path in line and last:
            stream = last
            break
    assert stream, f"no trace lines for {marker_path}"
    return [int(m.group(1)) for m in re.finditer(
        r'"StreamId":"' + stream + r'"\] decode data called: filter=envoy\.filters\.http\.wasm '
        r'status=(\d+)', log)]


def test_filter_holds_the_body_only_until_the_context_id_is_complete(traced):
    ctx = "piecewise-0001"
    path = "/stream-trace-1"
    body = (b'{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":'
            b'{"role":"user","contextId":"' + ctx.encode() + b'","parts":[{"kind":"text","text":"'
            + b"t" * 60 + b'"}]}}}')
    pieces = [body[i:i + 4] for i in range(0, len(body), 4)]
    # The piece that holds the closing quote of the value completes it.
    completing = (body.index(ctx.encode()) + len(ctx)) // 4
    status, raw = send_chunked(traced.port, path, [("content-type", "application/json")],
                               pieces, delay=0.004)
    assert status == 200, raw[:300]
    assert b'"context_ids": ["' + ctx.encode() + b'"]' in raw
    assert sha256(body).encode() in raw
    statuses = wasm_data_statuses(traced, path)
    print("wasm data callback statuses:", statuses, "completing piece:", completing)
    # Several separate data callbacks before the value was complete ...
    held = statuses.index(CONTINUE) if CONTINUE in statuses else len(statuses)
    assert 2 <= held <= completing, statuses
    assert set(statuses[:held]) == {STOP_AND_BUFFER}, statuses
    # ... then Continue, and later pieces pass through the filter unheld.
    assert len(statuses) > held + 5, statuses
    assert set(statuses[held:]) == {CONTINUE}, statuses
