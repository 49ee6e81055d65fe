"""How the filter sees a body that arrives in pieces, read from Envoy's own
trace log of the HTTP filter chain: each piece reaches the filter as its own
data callback, and the filter holds the request (StopIterationAndBuffer) until
the body ends, since a later duplicate contextId would be the one the agent
keeps; the last contextId is the one routed by. For the Wasm module and the dynamic
module; the ext_proc server sees one buffered body message instead
(BUFFERED_PARTIAL), so this is not its behaviour."""

import re

import pytest

from a2a_harness import current_shell
from e2e_harness import send_chunked, sha256

# Envoy's FilterDataStatus values in "decode data called: ... status=N".
CONTINUE, STOP_AND_BUFFER, STOP_AND_WATERMARK = 0, 1, 2
# The filter's name in the trace, and the status it holds the body with: the
# Wasm host buffers; the dynamic module asks for watermark flow control, so
# that a body past the buffer limit slows the client instead of a 413.
FILTERS = {"wasm": ("envoy.filters.http.wasm", STOP_AND_BUFFER),
           "dynamic-module": ("envoy.filters.http.dynamic_modules", STOP_AND_WATERMARK)}

pytestmark = pytest.mark.skipif(current_shell() not in FILTERS,
                                reason="the ext_proc server reads one buffered body message")
FILTER, HOLD = FILTERS.get(current_shell(), FILTERS["wasm"])


@pytest.fixture(scope="module")
def traced(start_envoy):
    return start_envoy("envoy/envoy.yaml", name="traced", concurrency=1,
                       extra_args=["--component-log-level", "http:trace"])


def data_statuses(envoy, marker_path):
    """Statuses the filter returned for each data callback of the one
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
        r'"StreamId":"' + stream + r'"\] decode data called: filter=' + re.escape(FILTER)
        + r' status=(\d+)', log)]


@pytest.mark.parametrize("late", [None, "piecewise-late"])
def test_filter_holds_the_body_to_its_end_and_the_last_context_id_wins(traced, late):
    # The agents keep the last of a duplicate key, so the first contextId
    # cannot decide: every piece is held until the body ends, and a second
    # contextId later in the message is the one routed by.
    ctx = "piecewise-0001"
    path = f"/stream-trace-{late or 'one'}"
    tail = b',"contextId":"' + late.encode() + b'"' if late else b""
    body = (b'{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":'
            b'{"role":"user","contextId":"' + ctx.encode() + b'","parts":[{"kind":"text","text":"'
            + b"t" * 60 + b'"}]' + tail + b'}}}')
    pieces = [body[i:i + 4] for i in range(0, len(body), 4)]
    status, raw = send_chunked(traced.port, path, [("content-type", "application/json")],
                               pieces, delay=0.004)
    assert status == 200, raw[:300]
    want = late or ctx
    assert b'"context_ids": ["' + want.encode() + b'"]' in raw, raw[:400]
    assert sha256(body).encode() in raw
    statuses = data_statuses(traced, path)
    print(f"{FILTER} data callback statuses:", statuses)
    # Many separate data callbacks, every one held but the one that ends
    # the body.
    assert len(statuses) > 5, statuses
    assert set(statuses[:-1]) == {HOLD}, statuses
    assert statuses[-1] == CONTINUE, statuses
