"""Whole A2A conversations over gRPC through Envoy 1.40 with the filter.

Three gRPC replicas of the demo agent (a2a-sdk 1.3.0 gRPC handlers, the 1.0
service and the 0.3 one; tests/e2e/grpc_agent.py) sit behind Envoy started
from envoy/envoy.yaml, then from envoy/envoy-maglev.yaml, with the cluster
switched to HTTP/2 upstream as gRPC needs. The a2a-sdk gRPC client (GrpcTransport for 1.0, CompatGrpcTransport
for 0.3) runs conversations whose first message has no context_id: the
filter must mint one into the protobuf Message, every later turn (with the
context_id, or with only the task_id) must reach the same replica, and
GetTask/CancelTask must be routed by tasks learned from the response frames.
Each replica's record of the raw request bytes and x-context-id metadata
shows what the upstream received."""

import asyncio
import re
import uuid

import grpc.aio
import pytest

from a2a.client.transports.grpc import GrpcTransport
from a2a.compat.v0_3 import a2a_v0_3_pb2 as pb03
from a2a.compat.v0_3.grpc_transport import CompatGrpcTransport
from a2a.types import a2a_pb2 as pb

from a2a_harness import h2_upstream, load_config
from e2e_harness import Envoy, counter_delta
from grpc_agent import GrpcReplicas

REPLICAS = ["replica-1", "replica-2", "replica-3"]
# Each first turn's context is minted at random, so all of them land on one
# of the three replicas with probability 3 / 3**CONVERSATIONS: about 1 in
# 243 for 6 (met once in a CI run of the four tests per shell); 1 in 19,683
# for 10.
CONVERSATIONS = 10
REPLY = re.compile(r"^(replica-\d): turn (\d+) of context ")
V1 = "/lf.a2a.v1.A2AService/"
V0 = "/a2a.v1.A2AService/"


@pytest.fixture(scope="module", params=["envoy/envoy.yaml", "envoy/envoy-maglev.yaml"],
                ids=["ring-hash", "maglev"])
def gateway(request, wasm_module, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("grpc")
    replicas = GrpcReplicas(REPLICAS, "http://127.0.0.1:1")
    lb = "maglev" if "maglev" in request.param else "ring"
    try:
        envoy = Envoy(h2_upstream(load_config(request.param)), replicas, workdir,
                      name=f"envoy-grpc-{lb}")
    except Exception:
        replicas.stop()
        raise
    yield envoy, replicas
    envoy.stop()
    replicas.stop()


def user(text, *, context_id="", task_id=""):
    return pb.SendMessageRequest(message=pb.Message(
        message_id=str(uuid.uuid4()), context_id=context_id, task_id=task_id,
        role=pb.ROLE_USER, parts=[pb.Part(text=text)]),
        # Present, so that the 0.3 service gets blocking = true, as the
        # SDK's own client sends it (0.3 defaults to non-blocking).
        configuration=pb.SendMessageConfiguration())


def reply_of(task):
    """The agent's answer: the status message (1.0), or the last agent
    message of the history (the 0.3 service moves it there)."""
    messages = [task.status.message] + [m for m in reversed(task.history)
                                        if m.role == pb.ROLE_AGENT]
    return next(m.parts[0].text for m in messages if m.parts)


async def conversation(transport, n):
    """hello (no ids) -> book (context) -> date (task only) -> stream
    (context) -> GetTask -> book again -> CancelTask. Returns what was sent
    and answered."""
    sent, replies = [], []

    async def send(req):
        sent.append(req)
        resp = await transport.send_message(req)
        assert resp.WhichOneof("payload") == "task", resp
        replies.append(reply_of(resp.task))
        return resp.task

    first = await send(user(f"hello {n}"))
    ctx = first.context_id
    booking = await send(user("book a table", context_id=ctx))
    assert booking.status.state == pb.TASK_STATE_INPUT_REQUIRED
    done = await send(user("tomorrow", task_id=booking.id))
    assert done.status.state == pb.TASK_STATE_COMPLETED
    streamed = user("stream a story", context_id=ctx)
    sent.append(streamed)
    last = None
    async for event in transport.send_message_streaming(streamed):
        if event.WhichOneof("payload") == "status_update":
            last = event.status_update
    assert last is not None and last.status.state == pb.TASK_STATE_COMPLETED
    replies.append(last.status.message.parts[0].text)
    got = await transport.get_task(pb.GetTaskRequest(id=booking.id))
    again = await send(user("book again", context_id=ctx))
    canceled = await transport.cancel_task(pb.CancelTaskRequest(id=again.id))
    return {
        "context_id": ctx, "sent": sent, "replies": replies, "got": got,
        "tasks": {booking.id, again.id, first.id}, "canceled": canceled,
    }


async def run_conversations(port, service):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    transport = (GrpcTransport if service == V1 else CompatGrpcTransport)(channel, None)
    try:
        return [await conversation(transport, n) for n in range(CONVERSATIONS)]
    finally:
        await channel.close()


def received_ids(method, body):
    """(context_id, task_id) named by a request the upstream received."""
    rpc = method.rsplit("/", 1)[1]
    if method.startswith(V1):
        if rpc in ("SendMessage", "SendStreamingMessage"):
            m = pb.SendMessageRequest.FromString(body).message
            return m.context_id, m.task_id
        cls = {"GetTask": pb.GetTaskRequest, "CancelTask": pb.CancelTaskRequest}[rpc]
        return "", cls.FromString(body).id
    if rpc in ("SendMessage", "SendStreamingMessage"):
        m = pb03.SendMessageRequest.FromString(body).request
        return m.context_id, m.task_id
    cls = {"GetTask": pb03.GetTaskRequest, "CancelTask": pb03.CancelTaskRequest}[rpc]
    return "", cls.FromString(body).name.removeprefix("tasks/")


@pytest.mark.parametrize("service", [V1, V0], ids=["lf.a2a.v1", "a2a.v1-0.3"])
def test_grpc_conversations_stay_on_one_replica(gateway, service):
    envoy, replicas = gateway
    for entries in replicas.received.values():
        entries.clear()
    before = envoy.stats()
    results = asyncio.run(run_conversations(envoy.port, service))
    delta = counter_delta(before, envoy.stats())

    # Where each request landed, from the replicas' own records.
    landed = {}
    for name, entries in replicas.received.items():
        for e in entries:
            assert e["method"].startswith(service), e["method"]
            landed.setdefault(name, []).append(e)
    used = set()
    for r in results:
        ctx = r["context_id"]
        assert uuid.UUID(ctx).version == 4, ctx
        mine = [(name, e) for name, entries in landed.items() for e in entries
                if (ids := received_ids(e["method"], e["body"]))[0] == ctx
                or ids[1] in r["tasks"]]
        # 4 sends, 1 stream, GetTask, CancelTask.
        assert len(mine) == 7, [e["method"] for _, e in mine]
        where = {name for name, _ in mine}
        assert len(where) == 1, f"context {ctx} spread over {where}"
        used |= where
        # Every request carried exactly the conversation's key.
        for _, e in mine:
            assert e["x_context_id"] == [ctx], e
        # The first turn: the upstream got the minted context_id in the
        # Message and adopted it; everything else in the message as sent.
        first_entry = mine[0][1]
        assert first_entry["method"].endswith("/SendMessage")
        assert received_ids(first_entry["method"], first_entry["body"]) == (ctx, "")
        first_sent = r["sent"][0]
        if service == V1:
            got = pb.SendMessageRequest.FromString(first_entry["body"])
            got.message.ClearField("context_id")
            assert got == first_sent
            # Later requests arrived byte for byte as the client sent them.
            later = [e["body"] for _, e in mine[1:]]
            for req in r["sent"][1:]:
                assert req.SerializeToString() in later
        else:
            got = pb03.SendMessageRequest.FromString(first_entry["body"]).request
            assert (got.message_id, got.content[0].text) == (
                first_sent.message.message_id, first_sent.message.parts[0].text)
        # Every answer came from that replica with the whole history.
        turns = [REPLY.match(text).groups() for text in r["replies"]]
        assert {t[0] for t in turns} == where
        assert [int(t[1]) for t in turns] == [1, 2, 3, 4, 5]
        assert "history: hello" in r["replies"][-1] and "tomorrow | stream a story" in r[
            "replies"][-1]
        assert r["got"].context_id == ctx and len(r["got"].history) >= 2
        assert r["canceled"].status.state == pb.TASK_STATE_CANCELED
    assert len(used) >= 2, f"all {CONVERSATIONS} conversations on {used}"
    assert delta.get("minted") == CONVERSATIONS, delta
    assert delta.get("task_routed") == 3 * CONVERSATIONS, delta
    assert delta.get("context_found") == 3 * CONVERSATIONS, delta
    assert not delta.get("task_unknown") and not delta.get("invalid_json"), delta
