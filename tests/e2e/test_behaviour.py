"""The filter's rules one by one, in Envoy 1.40 with envoy/envoy.yaml and a
small scan limit (4 KiB) and minting off, so that "no contextId" stays
visible: what the upstream receives (body bytes, every `x-context-id`
value), where the request lands, and which counters move."""

import json
import re

import pytest

from e2e_harness import Exchange, counter_delta, send_all

PLUGIN = {"max_scan_bytes": 4096, "mint_context_id": False}
JSON = ("content-type", "application/json")


@pytest.fixture(scope="module")
def envoy(start_envoy):
    return start_envoy("envoy/envoy.yaml", name="behaviour", plugin=PLUGIN)


def jsonrpc(message, method="SendMessage"):
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                       "params": {"message": message}}).encode()


def run(envoy, *exchanges):
    """Send, then return the counter changes the requests caused."""
    before = envoy.stats()
    send_all(envoy.port, exchanges, 1)
    return counter_delta(before, envoy.stats())


def home(envoy, ctx):
    ex = Exchange(body=jsonrpc({"contextId": ctx, "parts": []}), headers=[JSON], context_id=ctx)
    run(envoy, ex)
    assert ex.problems() == []
    return ex.report["replica"]


def test_body_over_the_scan_limit_arrives_intact_without_header(envoy):
    ctx = "after-the-limit"
    body = jsonrpc({"parts": [{"text": "x" * 10_000}], "contextId": ctx})
    ex = Exchange(body=body, headers=[JSON])
    delta = run(envoy, ex)
    assert ex.problems(expect_context_ids=[]) == []
    assert delta.get("scan_limit") == 1, delta


def test_body_of_3_mib_is_never_413(envoy):
    body = jsonrpc({"parts": [{"text": "y" * (3 << 20)}], "contextId": "never-read"})
    ex = Exchange(body=body, headers=[JSON, ("x-context-id", "client-3mib")])
    delta = run(envoy, ex)
    # Past the limit the request goes on as it came, client header included.
    assert ex.problems(expect_context_ids=["client-3mib"]) == []
    assert delta.get("scan_limit") == 1, delta


def test_context_just_inside_the_scan_limit_is_found(envoy):
    ctx = "inside-the-limit"
    body = jsonrpc({"parts": [{"text": "z" * 3000}], "contextId": ctx})
    assert len(body) < 4096
    ex = Exchange(body=body, headers=[JSON], context_id=ctx)
    delta = run(envoy, ex)
    assert ex.problems() == []
    assert delta.get("context_found") == 1, delta


def test_get_and_non_json_pass_untouched(envoy):
    a2a_body = jsonrpc({"contextId": "in-a-non-json-body"})
    sent = [
        Exchange(method="GET", path="/.well-known/agent-card.json",
                 headers=[("x-context-id", "client-get")]),
        Exchange(method="GET", path="/healthz"),
        Exchange(body=a2a_body, headers=[("content-type", "text/plain")]),
        Exchange(body=a2a_body, headers=[("content-type", "application/octet-stream"),
                                         ("x-context-id", "client-octet")]),
        # Compressed bodies cannot be scanned; they pass as they are.
        Exchange(body=a2a_body, headers=[JSON, ("content-encoding", "gzip")]),
        Exchange(body=a2a_body, headers=[]),
    ]
    delta = run(envoy, *sent)
    expected = [["client-get"], [], [], ["client-octet"], [], []]
    problems = [p for ex, want in zip(sent, expected)
                for p in ex.problems(expect_context_ids=want)]
    assert not problems, "\n".join(problems)
    assert delta.get("passthrough") == len(sent), delta
    assert "context_found" not in delta, delta


def test_rest_get_of_an_unknown_task_keeps_the_client_header(envoy):
    # GET .../tasks/{id} names a task in its path: the filter looks the task
    # up (nothing learned here), reads no body, and leaves the header alone.
    ex = Exchange(method="GET", path="/v1/tasks/t-unknown", headers=[("x-context-id", "client-t")])
    delta = run(envoy, ex)
    assert ex.problems(expect_context_ids=["client-t"]) == []
    assert delta.get("task_unknown") == 1, delta
    assert "context_found" not in delta, delta


def test_client_header_is_overwritten_by_the_body(envoy):
    ctx = "body-wins"
    ex = Exchange(body=jsonrpc({"contextId": ctx}), headers=[JSON, ("x-context-id", "client-says")],
                  context_id=ctx)
    delta = run(envoy, ex)
    assert ex.problems() == []
    assert ex.report["replica"] == home(envoy, ctx)
    assert delta.get("context_found") == 1, delta


def test_two_client_headers_collapse_to_the_body_value(envoy):
    ctx = "one-value-only"
    ex = Exchange(body=jsonrpc({"contextId": ctx}),
                  headers=[JSON, ("x-context-id", "first"), ("x-context-id", "second")],
                  context_id=ctx)
    run(envoy, ex)
    assert ex.problems() == []
    assert ex.report["replica"] == home(envoy, ctx)


def test_body_without_context_keeps_the_client_header(envoy):
    ex = Exchange(body=jsonrpc({"messageId": "m", "parts": [{"text": "hi"}]}),
                  headers=[JSON, ("x-context-id", "client-kept")])
    delta = run(envoy, ex)
    assert ex.problems(expect_context_ids=["client-kept"]) == []
    assert delta.get("client_header_kept") == 1, delta
    assert delta.get("context_absent") == 1, delta
    assert ex.report["replica"] == home(envoy, "client-kept")


def test_decoys_outside_the_message_path_do_not_count(envoy):
    decoys = {
        "messageId": "m-decoy",
        "parts": [{"kind": "text", "text": '{"contextId":"decoy-text"} "contextId":"decoy-2"'},
                  {"kind": "data", "data": {"contextId": "decoy-data"}}],
        "metadata": {"contextId": "decoy-metadata"},
        "referenceTaskIds": ["contextId"],
    }
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                       "params": {"metadata": {"contextId": "decoy-params"},
                                  "contextId": "decoy-beside-message", "message": decoys}}).encode()
    ex = Exchange(body=body, headers=[JSON])
    delta = run(envoy, ex)
    assert ex.problems(expect_context_ids=[]) == []
    assert delta.get("context_absent") == 1, delta
    # The same decoys before the real one: the real one is taken.
    real = dict(decoys, contextId="the-real-one")
    ex = Exchange(body=jsonrpc(real), headers=[JSON], context_id="the-real-one")
    run(envoy, ex)
    assert ex.problems() == []


def test_escaped_key_and_value_are_decoded(envoy):
    body = (b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":'
            b'{"\\u0063ontextId":"esc\\u002dctx\\/1"}}}')
    ex = Exchange(body=body, headers=[JSON], context_id="esc-ctx/1")
    run(envoy, ex)
    assert ex.problems() == []


@pytest.mark.parametrize("body", [
    b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"role":"ROLE_USER",,"contextId":"c1"}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"parts":[}, "contextId":"c2"}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"contextId" "c3"}}}',
    b'not json at all {"contextId":"c4"}',
], ids=["double-comma", "bad-array", "missing-colon", "not-json"])
def test_invalid_json_passes_unchanged(envoy, body):
    ex = Exchange(body=body, headers=[JSON, ("x-context-id", "client-invalid")])
    delta = run(envoy, ex)
    assert ex.problems(expect_context_ids=["client-invalid"]) == []
    assert delta.get("invalid_json") == 1, delta


@pytest.mark.parametrize("value", ["v" * 257, 42, {"a": 1}, ["x"]],
                         ids=["too-long", "number", "object", "array"])
def test_invalid_context_values_count_as_absent(envoy, value):
    ex = Exchange(body=jsonrpc({"contextId": value, "parts": []}), headers=[JSON])
    delta = run(envoy, ex)
    assert ex.problems(expect_context_ids=[]) == []
    assert delta.get("invalid_value") == 1, delta


@pytest.mark.parametrize("value", ["", None], ids=["empty", "null"])
def test_null_or_empty_context_ids_are_first_turns(envoy, value):
    # The agents mint their own contextId for these; with minting off (this
    # Envoy's config) the filter counts a first turn with nothing to route.
    ex = Exchange(body=jsonrpc({"contextId": value, "parts": []}), headers=[JSON])
    delta = run(envoy, ex)
    assert ex.problems(expect_context_ids=[]) == []
    assert delta.get("context_absent") == 1, delta


@pytest.mark.parametrize("value,header", [("tab\there", "tab%09here"), ("nl\nhere", "nl%0Ahere"),
                                          (" padded ", "%20padded%20")],
                         ids=["tab", "newline", "padded"])
def test_context_ids_that_are_no_field_value_are_sent_encoded(envoy, value, header):
    ex = Exchange(body=jsonrpc({"contextId": value, "parts": []}), headers=[JSON],
                  context_id=header)
    delta = run(envoy, ex)
    assert ex.problems() == []
    assert delta.get("context_found") == 1, delta


def test_longest_valid_value_is_used(envoy):
    ctx = "k" * 256
    ex = Exchange(body=jsonrpc({"contextId": ctx}), headers=[JSON], context_id=ctx)
    run(envoy, ex)
    assert ex.problems() == []


@pytest.mark.parametrize("path,doc,ctx", [
    ("/", {"jsonrpc": "2.0", "id": 1, "method": "message/stream",
           "params": {"message": {"context_id": "snake-rpc"}}}, "snake-rpc"),
    ("/", {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {"contextId": "list-ctx"}},
     "list-ctx"),
    ("/v1/message:stream", {"message": {"context_id": "rest-stream"}}, "rest-stream"),
    ("/agents/a/message", {"message": {"contextId": "plain-message"}}, "plain-message"),
    ("/message:send", {"request": {"contextId": "request-camel"}}, "request-camel"),
])
def test_other_shapes_the_contract_names(envoy, path, doc, ctx):
    ex = Exchange(path=path, body=json.dumps(doc).encode(),
                  headers=[("content-type", "application/a2a+json; charset=utf-8")], context_id=ctx)
    run(envoy, ex)
    assert ex.problems() == []


@pytest.fixture(scope="module")
def strip_envoy(start_envoy):
    return start_envoy("envoy/envoy.yaml", name="behaviour-strip",
                       plugin={"client_header": "strip", "mint_context_id": False})


def test_strip_removes_the_client_header_when_the_body_has_none(strip_envoy):
    without = Exchange(body=jsonrpc({"messageId": "m", "parts": [{"text": "hi"}]}),
                       headers=[JSON, ("x-context-id", "client-a"), ("x-context-id", "client-b")])
    with_ctx = Exchange(body=jsonrpc({"contextId": "body-ctx"}),
                        headers=[JSON, ("x-context-id", "client-c")], context_id="body-ctx")
    delta = run(strip_envoy, without, with_ctx)
    assert without.problems(expect_context_ids=[]) == []
    assert with_ctx.problems() == []
    assert "client_header_kept" not in delta, delta
    assert delta.get("context_found") == 1, delta


def _ext_proc_request_headers(envoy):
    """Request-headers messages the shell's ext_proc server has handled;
    None for the shells inside Envoy."""
    if envoy.ext_proc is None:
        return None
    found = re.search(r'^a2a_affinity_ext_proc_message_duration_seconds_count\{kind="request_headers"\} (\d+)$',
                      envoy.ext_proc.metrics(), re.M)
    return int(found.group(1)) if found else 0


def test_a_client_gone_mid_body_is_counted_as_aborted(envoy):
    # The request is held while its body is read; the client closes the
    # connection before the contextId arrives. The stream ends undecided,
    # and every request still ends in exactly one outcome.
    import socket

    from a2a_harness import wait_until

    before = envoy.stats()
    headers_before = _ext_proc_request_headers(envoy)
    head = (b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 2000\r\n\r\n")
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=10) as s:
        s.sendall(head + b'{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{')
        wait_until(lambda: envoy.stat("http.a2a_ingress.downstream_rq_active") >= 1, 10,
                   "request seen by Envoy")
        if headers_before is not None:
            # The ext_proc server counts the requests it has seen: close only
            # once Envoy's request-headers message has reached it (Envoy
            # opens the gRPC stream after it has the request).
            wait_until(lambda: _ext_proc_request_headers(envoy) > headers_before, 10,
                       "request headers at the ext_proc server")
    wait_until(lambda: counter_delta(before, envoy.stats()).get("aborted", 0) >= 1, 10,
               "aborted counted")
    delta = counter_delta(before, envoy.stats())
    assert delta == {"aborted": 1}, delta
