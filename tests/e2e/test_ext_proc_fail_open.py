"""The ext_proc server fails open: when it is frozen (slow), stopped, or
restarted, requests through Envoy in kgateway's shape still reach the agents
unchanged, within the filter's message timeout (0.5 s in the shipped
config), and once it is back the header is set again.

Runs with A2A_SHELL=ext-proc."""

import json
import signal
import time

import pytest

from a2a_harness import ExtProcServer, current_shell, pause_process
from e2e_harness import Exchange, send_all

pytestmark = pytest.mark.skipif(current_shell() != "ext-proc",
                                reason="about the ext_proc server")

JSON = ("content-type", "application/json")


@pytest.fixture(scope="module")
def envoy(start_envoy):
    return start_envoy("envoy/envoy.yaml", name="fail-open")


def request(ctx):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                       "params": {"message": {"contextId": ctx, "parts": []}}}).encode()
    return Exchange(body=body, headers=[JSON], context_id=ctx)


def timed(envoy, ex):
    start = time.monotonic()
    send_all(envoy.port, [ex], 1)
    return time.monotonic() - start


def test_a_frozen_server_costs_at_most_the_message_timeout(envoy):
    server = envoy.ext_proc
    ex = request("before-freeze")
    timed(envoy, ex)
    assert ex.problems() == []
    pause_process(server.proc)
    try:
        frozen = request("while-frozen")
        took = timed(envoy, frozen)
        assert frozen.status == 200, frozen.raw[:200]
        # Envoy gave up on the server and let the request go unchanged.
        assert frozen.problems(expect_context_ids=[]) == []
        assert took < 2.0, took
    finally:
        server.proc.send_signal(signal.SIGCONT)
    after = request("after-thaw")
    timed(envoy, after)
    assert after.problems() == []


def test_a_stopped_then_restarted_server(envoy, tmp_path):
    server = envoy.ext_proc
    port, metrics_port = server.port, server.metrics_port
    server.stop()
    down = request("while-down")
    took = timed(envoy, down)
    assert down.status == 200, down.raw[:200]
    assert down.problems(expect_context_ids=[]) == []
    assert took < 2.0, took
    # A new server on the same address: Envoy reconnects and the header is
    # set again.
    plugin = server.config_path.read_text()
    envoy.ext_proc = ExtProcServer(plugin, workdir=tmp_path, name="restarted",
                                   port=port, metrics_port=metrics_port)
    deadline = time.monotonic() + 10
    while True:
        again = request("after-restart")
        timed(envoy, again)
        if not again.problems() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert again.problems() == []
