"""Whole conversations on one replica: real A2A agents, the real a2a-sdk
client, Envoy 1.40 from the shipped configs.

Three replicas of the demo agent (a2a-sdk DefaultRequestHandler with
InMemoryTaskStore) run behind Envoy. Each conversation starts with a message
that has no contextId, goes on for several turns, stops in input-required
and is continued by a follow-up that carries only the taskId, streams one
turn, then asks GetTask and cancels a task, on every transport (JSON-RPC
with A2A 1.0 and 0.3 method names, REST 1.0 and 0.3).

The same conversations run three ways, to show both holes the filter closes:
- no body filter, the client copying the contextId of the first answer into
  x-context-id (the usual recipe): the first turn lands at random, so later
  turns lose the history;
- the filter only copying a contextId already in the body (minting and task
  learning off): same first-turn hole, and task-only calls land at random;
- the filter as shipped: every turn, follow-up, get and cancel on one replica.
"""

import contextlib
import json

import pytest

from a2a_harness import (REPO, current_shell, free_port, js_client, module_path, running_replicas,
                         wasm_plugin)

from demo import drive, run_demo
from e2e_harness import filter_state_parts, first_route

TRANSPORTS = ["jsonrpc", "jsonrpc-0.3", "rest", "rest-0.3"]
PER_TRANSPORT = 5


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """Three agent replicas and `gateway(name, ...)`: a context manager that
    runs a fresh Envoy in front of them in the given mode and yields
    (url, replicas, counters), counters read when the block ends."""
    listen_port = free_port()
    url = f"http://127.0.0.1:{listen_port}"
    workdir = tmp_path_factory.mktemp("conversations")
    # Plain UUID task ids: these suites check the routing learned from
    # responses (test_task_ids.py checks ids that carry their context).
    with running_replicas(3, public_url=url, task_ids="uuid") as replicas:
        ports = [r.port for r in replicas]

        @contextlib.contextmanager
        def run(name, *, source="envoy/envoy.yaml", with_filter=True, plugin=None,
                hash_policy=None):
            admin_port = free_port()
            cfg = run_demo.envoy_config(REPO / source, listen_port, admin_port, ports,
                                        with_filter, module_path().resolve())
            if plugin is not None:
                wasm_plugin(cfg)["configuration"]["value"] = json.dumps(plugin)
            if hash_policy is not None:
                first_route(cfg)["route"]["hash_policy"] = hash_policy
            with run_demo.start_envoy(cfg, workdir, name) as envoy:
                counters = {}
                yield url, replicas, counters
                counters.update(envoy.stats())

        yield run


def converse(gateway, name, header=None, **mode):
    """The a2a-sdk client's conversations on every transport, through Envoy."""
    with gateway(name, **mode) as (url, replicas, counters):
        results = []
        for transport in TRANSPORTS:
            results += drive.drive_sync(
                [url], transport=transport, conversations=PER_TRANSPORT,
                context_header=header, debug_urls=[r.url for r in replicas],
                followup="task-only")
    return results, counters


def figures_of(results):
    s = drive.summarize(results)
    return {
        "conversations": s["conversations"],
        "history_intact": s["history_intact"],
        "one_replica": sum(c.one_replica for c in results),
        "followups_ok": s["followups_ok"],
        "gets_ok": s["gets_ok"],
        "cancels_ok": s["cancels_ok"],
        "streams_first_event_early": s["streams_first_event_early"],
    }


def all_ok(pair):
    ok, total = pair
    return total > 0 and ok == total


@pytest.mark.parametrize("source, plugin", [
    ("envoy/envoy.yaml", None),
    ("envoy/envoy-maglev.yaml", None),
    # Deciding at the first id: the same conversations, each request let go
    # at its contextId (or task id) rather than at the end of its body.
    ("envoy/envoy.yaml", {"decide_at": "first_id"}),
], ids=["ring-hash", "maglev", "ring-hash-first-id"])
def test_every_turn_follow_up_get_and_cancel_on_one_replica(gateway, figures, source, plugin):
    what = source + (f", {json.dumps(plugin)}" if plugin else "")
    name = f"filter-{source.split('/')[-1]}" + ("-first-id" if plugin else "")
    results, counters = converse(gateway, name, source=source, plugin=plugin)
    f = figures_of(results)
    figures.record(f"conversations with the filter ({what})", f)
    assert f["conversations"] == len(TRANSPORTS) * PER_TRANSPORT
    bad = [c.to_dict() for c in results if not (c.history_intact and c.one_replica)]
    assert not bad, json.dumps(bad[:2], indent=1, default=str)
    for c in results:
        # The agent that answered holds the whole context, and no other does.
        assert c.holders is not None and list(c.holders.values()) == [len(c.turns)], c.holders
        assert all_ok(c.followups) and all_ok(c.gets) and all_ok(c.cancels), c.to_dict()
        # The first turn carried no contextId: the filter minted the one the
        # agent adopted, so the conversation's contextId is a UUID v4.
        assert c.context_id and len(c.context_id) == 36 and c.context_id[14] == "4"
    assert all_ok(f["streams_first_event_early"]), f
    assert counters["minted"] >= f["conversations"], counters
    assert counters["task_routed"] >= 2 * f["conversations"], counters
    assert counters["task_unknown"] == 0, counters
    assert counters["invalid_json"] == 0 and counters["scan_limit"] == 0, counters


@pytest.mark.skipif(current_shell() != "dynamic-module",
                    reason="hash_on filter_state is the dynamic module's")
def test_conversations_routed_on_filter_state_stay_on_one_replica(gateway, figures):
    # envoy/envoy-dynamic-module-filter-state.yaml's filter JSON and route:
    # the module hands each key to Envoy as filter state; both SDK clients.
    plugin, hash_policy = filter_state_parts()
    with gateway("filter-state", plugin=json.loads(plugin), hash_policy=hash_policy) as (
            url, replicas, counters):
        results = []
        for transport in TRANSPORTS:
            results += drive.drive_sync(
                [url], transport=transport, conversations=PER_TRANSPORT,
                debug_urls=[r.url for r in replicas], followup="task-only")
        js = {t: js_converse(url, t, 2) for t in TRANSPORTS}
    f = figures_of(results)
    figures.record("conversations with the filter, hash_on filter_state", {
        **f, "@a2a-js/sdk": {t: out["summary"] for t, out in js.items()}})
    bad = [c.to_dict() for c in results if not (c.history_intact and c.one_replica)]
    assert not bad, json.dumps(bad[:2], indent=1, default=str)
    for c in results:
        assert c.holders is not None and list(c.holders.values()) == [len(c.turns)], c.holders
        assert all_ok(c.followups) and all_ok(c.gets) and all_ok(c.cancels), c.to_dict()
    # Hashed on the key, not on the one client's address (the route's last
    # fallback): the conversations spread over the replicas.
    assert len({r for c in results for r in c.replicas}) > 1, [c.replicas for c in results]
    for transport, out in js.items():
        s = out["summary"]
        assert s["historyIntact"] == s["conversations"] == 2, (transport, s)
        for key in ("followupsOk", "getsOk", "cancelsOk"):
            assert s[key][0] == s[key][1] > 0, (transport, key, s)
        assert all(len(conv["replicas"]) == 1 for conv in out["conversations"]), transport
    assert counters["minted"] >= f["conversations"] + 8, counters
    assert counters["task_routed"] >= 2 * f["conversations"], counters
    assert counters["task_unknown"] == 0, counters


def test_without_the_filter_conversations_lose_history(gateway, figures):
    results, _ = converse(gateway, "no-filter", with_filter=False, header="x-context-id")
    f = figures_of(results)
    figures.record("conversations without a body filter (client copies the contextId)", f)
    # A first turn lands on one replica in three by chance, so twenty
    # conversations all keeping their history is a (1/3)^20 event.
    assert f["history_intact"] < f["conversations"], f
    lost = [c for c in results if not c.history_intact]
    assert all(len(c.replicas) > 1 for c in lost)


def test_copying_the_context_id_alone_leaves_both_holes(gateway, figures):
    results, counters = converse(
        gateway, "copy-only", plugin={"mint_context_id": False, "learn_tasks": False})
    f = figures_of(results)
    figures.record("conversations with a copy-only filter (no minting, no task learning)", f)
    assert counters["minted"] == 0 and counters["task_routed"] == 0, counters
    assert f["history_intact"] < f["conversations"], f
    # Task-only calls (the follow-up by taskId, GetTask, CancelTask) carry no
    # contextId and land at random: some of them find no task.
    failed = sum(t - ok for ok, t in (f["followups_ok"], f["gets_ok"], f["cancels_ok"]))
    assert failed > 0, f


def js_converse(url, transport, conversations):
    """The second, independent client: @a2a-js/sdk (tests/js/converse.mjs)."""
    try:
        return js_client.converse([url], transport, "--conversations", str(conversations),
                                  "--followup", "task-only")
    except js_client.JsClientMissing as e:
        pytest.fail(str(e), pytrace=False)


@pytest.mark.parametrize("source", ["envoy/envoy.yaml", "envoy/envoy-maglev.yaml"],
                         ids=["ring-hash", "maglev"])
def test_the_js_client_keeps_every_conversation_on_one_replica(gateway, figures, source):
    name = "filter-js" + ("-maglev" if "maglev" in source else "")
    with gateway(name, source=source) as (url, replicas, counters):
        outs = {t: js_converse(url, t, 3) for t in TRANSPORTS}
        held = {r.name: r.contexts() for r in replicas}
    summary = {t: out["summary"] for t, out in outs.items()}
    figures.record(f"conversations with the filter, @a2a-js/sdk client ({source})", summary)
    for transport, out in outs.items():
        s = out["summary"]
        assert s["client"] == "@a2a-js/sdk"
        assert s["historyIntact"] == s["conversations"] == 3, (transport, s)
        for key in ("followupsOk", "getsOk", "cancelsOk"):
            assert s[key][0] == s[key][1] > 0, (transport, key, s)
        for conv in out["conversations"]:
            assert len(conv["replicas"]) == 1, (transport, conv["replicas"])
            holders = [name for name, ctxs in held.items() if conv["contextId"] in ctxs]
            assert holders == conv["replicas"], (transport, conv["contextId"], holders)
    assert counters["minted"] >= 12 and counters["task_unknown"] == 0, counters
