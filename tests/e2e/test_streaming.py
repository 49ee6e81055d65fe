"""How the filter sees a body that arrives in pieces, read from Envoy's own
trace log of the HTTP filter chain: each piece reaches the filter as its own
data callback, the filter holds the request (StopIterationAndBuffer) only
until the contextId's value is complete, then continues, and the rest of the
body streams through without being held. For the Wasm module and the dynamic
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
    statuses = data_statuses(traced, path)
    print(f"{FILTER} data callback statuses:", statuses, "completing piece:", completing)
    # Several separate data callbacks before the value was complete ...
    held = statuses.index(CONTINUE) if CONTINUE in statuses else len(statuses)
    assert 2 <= held <= completing, statuses
    assert set(statuses[:held]) == {HOLD}, statuses
    # ... then Continue, and later pieces pass through the filter unheld.
    assert len(statuses) > held + 5, statuses
    assert set(statuses[held:]) == {CONTINUE}, statuses
