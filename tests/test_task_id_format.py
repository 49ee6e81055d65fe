"""Task ids that carry their contextId: the Python package
(agents/python, `a2a_affinity_ids`) against the Rust core.

- the shared vectors (crates/core/tests/task_id_vectors.json, which the
  Rust tests read too) encode and decode alike;
- ids the package makes with fresh randomness, for many kinds of
  contextIds, go through the core itself (crates/core/examples/route.rs) as
  task-only calls of JSON-RPC and REST: each is routed by its carried
  contextId (`task_id_routed`) with the header the contextId's own turns get;
- a real a2a-sdk agent (demo/agent.py, a2a-sdk 1.3.0) with the package's
  generator answers with such ids, and `tasks/get` finds the task by them.

No Envoy here: the end-to-end runs are tests/e2e/test_task_ids.py.
"""

import json
import random
import shutil
import subprocess
import uuid

import httpx
import pytest

from a2a_affinity_ids import ContextTaskIdGenerator, decode, encode
from a2a_harness import REPO
from a2a.server.id_generator import IDGeneratorContext

from test_differential import header_value, route_binary

VECTORS = json.loads((REPO / "crates/core/tests/task_id_vectors.json").read_text())
UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def test_the_shared_vectors_encode_and_decode_alike():
    assert len(VECTORS["encode"]) >= 10
    for case in VECTORS["encode"]:
        got = encode(case["context_id"], bytes.fromhex(case["random"]))
        assert got == case["task_id"]
        assert decode(got) == case["context_id"]
        assert set(got) <= UNRESERVED
    for foreign in VECTORS["foreign"]:
        assert decode(foreign) is None, foreign


def contexts(rng):
    """contextIds of many shapes: minted UUIDs first, then odd ones."""
    out = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(100)]
    out.append(str(uuid.UUID(int=rng.getrandbits(128), version=1)))
    alphabet = "abcXYZ019-_.~ %/?#:é日本😀\t"
    for _ in range(150):
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))))
    out += [" padded ", "café", "50%", "x" * 160, "0F8FAD5B-D9CB-469F-A165-70867728950E"]
    return out


def test_fresh_ids_route_through_the_core_by_their_context():
    rng = random.Random(16)
    records = bytearray()
    sent = []
    for ctx in contexts(rng):
        task = encode(ctx)
        assert decode(task) == ctx
        assert set(task) <= UNRESERVED
        if len(task) > 256:
            # Past the gateway's max_value_bytes: the generator makes a
            # plain UUID for such a context instead.
            continue
        rpc = json.dumps({"jsonrpc": "2.0", "id": "1", "method": "tasks/get",
                          "params": {"id": task}}).encode()
        records += f"POST / application/json {len(rpc)}\n".encode() + rpc
        records += f"GET /v1/tasks/{task} - 0\n".encode()
        sent += [ctx, ctx]
    out = subprocess.run([str(route_binary())], input=bytes(records), capture_output=True,
                         check=True, timeout=300).stdout
    answers = [json.loads(line) for line in out.decode().splitlines() if line]
    assert len(answers) == len(sent) > 400
    for ctx, answer in zip(sent, answers):
        assert answer["outcome"] == "a2a_affinity.task_id_routed", (ctx, answer)
        assert answer["header"] == header_value(ctx), (ctx, answer)
        assert answer["body"] is None


def test_the_generator_falls_back_to_a_uuid_without_a_context_or_room():
    gen = ContextTaskIdGenerator()
    plain = gen.generate(IDGeneratorContext(context_id=None))
    assert str(uuid.UUID(plain)) == plain
    assert decode(plain) is None
    carried = gen.generate(IDGeneratorContext(context_id="ctx-1"))
    assert decode(carried) == "ctx-1"
    # Longer than the gateway reads (max_value_bytes 256): a plain UUID.
    assert decode(gen.generate(IDGeneratorContext(context_id="y" * 200))) is None
    assert decode(ContextTaskIdGenerator(max_length=400).generate(
        IDGeneratorContext(context_id="y" * 200))) == "y" * 200


@pytest.mark.parametrize("task_ids", ["context", "uuid"])
def test_an_a2a_sdk_agent_with_the_generator_answers_with_such_ids(task_ids):
    from demo.agent import build_app

    app = build_app("replica-x", "http://testserver", task_ids=task_ids)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            out = []
            for ctx in [str(uuid.uuid4()), "conversation café"]:
                msg = {"messageId": str(uuid.uuid4()), "role": "ROLE_USER",
                       "parts": [{"text": "book a table"}], "contextId": ctx}
                r = await c.post("/", headers={"A2A-Version": "1.0"}, json={
                    "jsonrpc": "2.0", "id": "1", "method": "SendMessage",
                    "params": {"message": msg}})
                task = r.json()["result"]["task"]
                assert task["contextId"] == ctx
                got = await c.post("/", headers={"A2A-Version": "1.0"}, json={
                    "jsonrpc": "2.0", "id": "2", "method": "GetTask",
                    "params": {"id": task["id"]}})
                assert got.json()["result"]["id"] == task["id"]
                # The follow-up by taskId alone completes the booking.
                follow = {"messageId": str(uuid.uuid4()), "role": "ROLE_USER",
                          "parts": [{"text": "at 8"}], "taskId": task["id"]}
                r = await c.post("/", headers={"A2A-Version": "1.0"}, json={
                    "jsonrpc": "2.0", "id": "3", "method": "SendMessage",
                    "params": {"message": follow}})
                assert r.json()["result"]["task"]["id"] == task["id"]
                out.append((ctx, task["id"]))
            return out

    import asyncio
    for ctx, task_id in asyncio.run(go()):
        if task_ids == "context":
            assert decode(task_id) == ctx, task_id
        else:
            assert str(uuid.UUID(task_id)) == task_id


def test_the_js_sdk_handler_wrapper_mints_such_ids():
    """agents/js/context-task-ids.mjs with @a2a-js/sdk 1.3.0 (tests/js):
    the vectors, and a wrapped DefaultRequestHandler's task ids, read back by
    this package and routed by the core."""
    node = shutil.which("node")
    if node is None or not (REPO / "tests/js/node_modules/@a2a-js/sdk").is_dir():
        pytest.fail("node and tests/js/node_modules are missing: run scripts/setup.sh",
                    pytrace=False)
    out = subprocess.run([node, "tests/js/task_ids.mjs", "crates/core/tests/task_id_vectors.json"],
                         cwd=REPO, capture_output=True, check=True, timeout=120, text=True).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["mismatches"] == [] and doc["vectors"] == len(VECTORS["encode"])
    assert len(doc["tasks"]) == 4
    records = bytearray()
    for t in doc["tasks"]:
        assert t["found"] and t["followUp"], t
        assert t["taskContextId"] == t["contextId"]
        assert decode(t["taskId"]) == t["contextId"], t
        records += f"GET /tasks/{t['taskId']} - 0\n".encode()
    out = subprocess.run([str(route_binary())], input=bytes(records), capture_output=True,
                         check=True, timeout=300).stdout
    answers = [json.loads(line) for line in out.decode().splitlines() if line]
    assert [a["header"] for a in answers] == [header_value(t["contextId"]) for t in doc["tasks"]]
