"""`decide_at`, in Envoy 1.40 with envoy/envoy.yaml: with `first_id` a
request goes to its replica as soon as its contextId has arrived, while
the client is still sending the body, and the upstream still gets every
byte; with the default `body_end` it is held to its last byte. Both read
the same contextId from SendMessage bodies as a2a-sdk 1.x writes them;
they part on bodies that name a second one later."""

import json
import socket
import time

import a2a.types as a2a
import pytest
from google.protobuf import json_format

from a2a_harness import current_shell
from e2e_harness import Exchange, counter_delta, send_all, sha256

JSON = ("content-type", "application/json")
FIRST_ID = {"decide_at": "first_id", "mint_context_id": False}
BODY_END = {"mint_context_id": False}
UPSTREAM_REQUESTS = "cluster.a2a_agents.upstream_rq_total"


@pytest.fixture(scope="module")
def first_id(start_envoy):
    return start_envoy("envoy/envoy.yaml", name="decide-first-id", plugin=FIRST_ID)


@pytest.fixture(scope="module")
def body_end(start_envoy):
    return start_envoy("envoy/envoy.yaml", name="decide-body-end", plugin=BODY_END)


def send_body(ctx, text):
    """A JSON-RPC SendMessage as a2a-sdk 1.x writes it: the message in
    ProtoJSON, whose field order puts the contextId before the parts."""
    message = a2a.Message(message_id="m-1", context_id=ctx, role=a2a.Role.Value("ROLE_USER"),
                          parts=[a2a.Part(text=text)])
    params = json.loads(json_format.MessageToJson(a2a.SendMessageRequest(message=message),
                                                  indent=None))
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                       "params": params}).encode()


def test_sdk_bodies_route_the_same_either_way(first_id, body_end):
    for envoy in (first_id, body_end):
        exchanges = [Exchange(body=send_body(f"same-{i}", "x" * size), headers=[JSON],
                              context_id=f"same-{i}")
                     for i, size in enumerate((10, 5_000, 100_000))]
        before = envoy.stats()
        send_all(envoy.port, exchanges, 1)
        for ex in exchanges:
            assert ex.problems() == []
        assert counter_delta(before, envoy.stats()) == {"context_found": 3}


def test_the_first_of_two_context_ids_wins(first_id, body_end):
    body = (b'{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":'
            b'{"contextId":"first","parts":[],"contextId":"last"}}}')
    for envoy, want in ((first_id, "first"), (body_end, "last")):
        ex = Exchange(body=body, headers=[JSON], context_id=want)
        send_all(envoy.port, [ex], 1)
        assert ex.problems() == []


def held_upload(envoy, ctx):
    """Sends the head and the body up to just past its contextId, then
    reports whether Envoy started the upstream request within two seconds,
    sends the rest, and returns (started, body, the upstream's report)."""
    body = send_body(ctx, "y" * 200_000)
    cut = body.index(ctx.encode()) + len(ctx) + 1
    head = (f"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    before = envoy.stat(UPSTREAM_REQUESTS)
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(head + body[:cut])
        deadline = time.monotonic() + 2
        started = False
        while time.monotonic() < deadline and not started:
            started = envoy.stat(UPSTREAM_REQUESTS) > before
            time.sleep(0.05)
        s.sendall(body[cut:])
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head_raw, _, answer = data.partition(b"\r\n\r\n")
    assert head_raw.startswith(b"HTTP/1.1 200"), head_raw
    return started, body, json.loads(answer)


@pytest.mark.skipif(current_shell() == "ext-proc",
                    reason="ext_proc gets the body in one message (BUFFERED_PARTIAL): Envoy holds "
                           "it whatever the server decides")
def test_first_id_lets_the_request_go_while_the_body_still_arrives(first_id, body_end):
    before = first_id.stats()
    started, body, report = held_upload(first_id, "streamed-on")
    assert started, "the upstream request did not start before the body ended"
    assert (report["body_sha256"], report["body_length"]) == (sha256(body), len(body))
    assert report["context_ids"] == ["streamed-on"]
    assert counter_delta(before, first_id.stats()) == {"context_found": 1}

    # The default holds the request until its last byte.
    started, body, report = held_upload(body_end, "held-to-the-end")
    assert not started, "body_end let the request go before the body ended"
    assert (report["body_sha256"], report["body_length"]) == (sha256(body), len(body))
    assert report["context_ids"] == ["held-to-the-end"]


def test_first_id_still_reads_a_first_turn_to_its_end(start_envoy):
    envoy = start_envoy("envoy/envoy.yaml", name="decide-first-id-mint",
                        plugin={"decide_at": "first_id"})
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                       "params": {"message": {"messageId": "m-2", "role": "user",
                                              "parts": [{"kind": "text", "text": "z" * 50_000}]}}}
                      ).encode()
    ex = Exchange(body=body, headers=[JSON])
    before = envoy.stats()
    send_all(envoy.port, [ex], 1)
    assert ex.status == 200
    assert counter_delta(before, envoy.stats()) == {"minted": 1}
    [minted] = ex.report["context_ids"]
    # The upstream got the body with the minted contextId written into it.
    assert ex.report["body_length"] == len(body) + len(f',"contextId":"{minted}"')
