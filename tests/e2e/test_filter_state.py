"""`"hash_on": "filter_state"`, the dynamic module's cheaper way to hand the
contextId to Envoy: as Envoy's hashable string in filter state, which the
route hashes first (envoy/envoy-dynamic-module-filter-state.yaml).

With the dynamic module, the shipped filter configuration and route hash
policy are put into envoy/envoy.yaml and envoy/envoy-maglev.yaml, and Envoy
1.40 (and 1.38 and 1.39, the other versions that load the module) must:
keep every context of every binding on one replica, on exactly the replica
that the header would have chosen (crates/envoy-lb's prediction for the
header); pass the body byte for byte with no `x-context-id` added; route a
minted first turn where its later turns go; route by a client's own header
when the body names no context; and make a client's header agree with the
key routed on when the body names another.

The proxy-wasm filter and the ext_proc server cannot write filter state:
with them the same configuration is refused at load, with one line that
says why."""

import json
import random

import pytest

from a2a_bodies import BINDINGS, context_ids, send_rounds
from a2a_harness import (ENVOY_BINARIES, current_shell, hcm, http_filters, load_config, plugin_of,
                         wasm_plugin)
from e2e_harness import (FILTER_STATE_CONFIG, Exchange, affinity, counter_delta, filter_state_parts,
                         first_route, not_where_predicted, predict_hosts, send_all, send_h2,
                         sha256)

CONFIGS = {"ring": "envoy/envoy.yaml", "maglev": "envoy/envoy-maglev.yaml"}
SHELL = current_shell()
# The versions that load the dynamic module; the first gets the full run.
VERSIONS = ["1.40.0", "1.38.2", "1.39.3"]
FULL_CONTEXTS = 1000
QUICK_CONTEXTS = 100

dynamic_only = pytest.mark.skipif(SHELL != "dynamic-module",
                                  reason=f"filter state is the dynamic module's, not {SHELL}'s")


def filter_state_config(source):
    """A shipped Wasm config with the filter-state config's filter JSON and
    hash policy (the harness puts the shell's filter in place)."""
    plugin, hash_policy = filter_state_parts()
    cfg = load_config(source)
    wasm_plugin(cfg)["configuration"]["value"] = plugin
    first_route(cfg)["route"]["hash_policy"] = hash_policy
    return cfg


def test_the_shipped_config_hashes_filter_state_first_then_the_header():
    plugin, hash_policy = filter_state_parts()
    assert json.loads(plugin)["hash_on"] == "filter_state"
    assert hash_policy[0] == {"filter_state": {"key": "envoy.hashable_string"}, "terminal": True}
    assert hash_policy[1] == {"header": {"header_name": json.loads(plugin)["header"]},
                              "terminal": True}
    # Everything else is the header config's, the filter's JSON included.
    shipped = load_config(FILTER_STATE_CONFIG)
    header = load_config("envoy/envoy-dynamic-module.yaml")
    filters = []
    for cfg in (shipped, header):
        filters.append(json.loads(plugin_of(cfg)))
        http_filters(cfg)[0]["typed_config"]["filter_config"]["value"] = None
        hcm(cfg)["access_log"] = None
        first_route(cfg)["route"]["hash_policy"] = None
    assert shipped == header
    assert filters[0].pop("hash_on") == "filter_state" and filters[0] == filters[1]


@pytest.fixture(scope="module")
def envoys(start_envoy):
    """Envoy per (version, lb), started when first asked for."""
    started = {}

    def get(version, lb):
        if (version, lb) not in started:
            binary = ENVOY_BINARIES[version]
            if not binary.exists():
                pytest.fail(f"{binary} is missing: run scripts/setup.sh", pytrace=False)
            started[version, lb] = start_envoy(filter_state_config(CONFIGS[lb]),
                                               name=f"filter-state-{version}-{lb}", binary=binary)
        return started[version, lb]

    return get


def assert_clean(exchanges):
    # The body byte for byte, and no x-context-id: the key went to filter
    # state.
    problems = [p for ex in exchanges for p in ex.problems(expect_context_ids=[])]
    assert not problems, f"{len(problems)} problems, first ones:\n" + "\n".join(problems[:20])


@dynamic_only
@pytest.mark.parametrize("lb", sorted(CONFIGS))
@pytest.mark.parametrize("version", VERSIONS)
def test_every_binding_keeps_each_context_where_the_header_would(envoys, upstreams, figures,
                                                                 version, lb):
    envoy = envoys(version, lb)
    assert version in envoy.admin("/server_info")
    contexts = FULL_CONTEXTS if version == VERSIONS[0] else QUICK_CONTEXTS
    rng = random.Random(f"filter-state-{version}-{lb}")
    ctxs = context_ids(rng, contexts)
    sent, delta = send_rounds(envoy, rng, BINDINGS, ctxs)

    assert_clean(sent)
    seen = affinity(sent, upstreams.names)
    assert seen["contexts"] == contexts
    assert seen["split_contexts"] == [], seen["split_contexts"][:10]
    share = 0.15 if contexts >= 1000 else 0.05
    assert min(seen["contexts_per_replica"].values()) >= share * contexts, seen
    assert delta.get("context_found") == len(sent), delta
    # crates/envoy-lb predicts from the header's hash: Envoy hashes the
    # filter-state string the same way, so every context lands where the
    # header would have put it.
    wrong = not_where_predicted(envoy, seen, ctxs)
    assert not wrong, f"{len(wrong)} contexts not where the header would go: {wrong[:10]}"
    spread = seen["contexts_per_replica"]
    figures.record(f"filter-state-{version}-{lb}", {
        "envoy": version, "contexts": contexts, "requests": seen["requests"],
        "fraction_with_affinity": seen["affinity"], "contexts_per_replica": spread,
        "counters": delta,
        "summary": (f"hash_on filter_state, Envoy {version} {lb}: {contexts} contexts, "
                    f"{seen['requests']} requests, {100 * seen['affinity']:.1f}% on one replica, "
                    "contexts per replica " + "/".join(str(spread[n]) for n in upstreams.names)
                    + f", {contexts - len(wrong)}/{contexts} where the header would go"),
    })


def _send(envoy, body, headers=()):
    ex = Exchange(path="/", body=body, headers=[("content-type", "application/json"),
                                                *headers])
    send_all(envoy.port, [ex], 1)
    assert ex.status == 200, ex.raw[:300]
    return ex


def _message(ctx=None, text="hello"):
    message = {"kind": "message", "messageId": f"m-{random.random()}", "role": "user",
               "parts": [{"kind": "text", "text": text}]}
    if ctx is not None:
        message["contextId"] = ctx
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                       "params": {"message": message}}).encode()


def _home(envoy, ctx):
    """The replica the header's hash picks for `ctx` (crates/envoy-lb)."""
    return envoy.upstreams.by_address[predict_hosts(envoy, [ctx])[ctx]]


@dynamic_only
@pytest.mark.parametrize("lb", sorted(CONFIGS))
def test_a_minted_first_turn_lands_where_its_later_turns_go(envoys, lb):
    envoy = envoys(VERSIONS[0], lb)
    for i in range(20):
        before = envoy.stats()
        first = _send(envoy, _message(text=f"first turn {i}"), [("x-echo-body", "1")])
        delta = counter_delta(before, envoy.stats())
        assert delta.get("minted") == 1, delta
        arrived = json.loads(first.report["body"])
        minted = arrived["params"]["message"]["contextId"]
        assert len(minted) == 36 and minted[14] == "4", minted
        assert first.report["context_ids"] == []
        assert first.report["body_length"] == len(first.report["body"].encode())
        home = _home(envoy, minted)
        assert first.report["replica"] == home
        later = _send(envoy, _message(minted, "second turn"))
        assert later.problems(expect_context_ids=[]) == []
        assert later.report["replica"] == home


@dynamic_only
def test_a_client_header_routes_when_the_body_names_none_and_yields_when_it_does(envoys):
    envoy = envoys(VERSIONS[0], "ring")
    no_context = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "SendMessage",
                             "params": {"message": {"messageId": "m-c", "taskId": "task-none",
                                                    "role": "ROLE_USER",
                                                    "parts": [{"text": "x"}]}}}).encode()
    for i in range(20):
        mine, body_ctx = f"client-key-{i}", f"body-key-{i}"
        # Only the client's header: kept, and the route's header policy
        # hashes it.
        kept = _send(envoy, no_context, [("x-context-id", mine)])
        assert kept.problems(expect_context_ids=[mine]) == []
        assert kept.report["replica"] == _home(envoy, mine)
        # The body names another context: it is routed on, and the agent's
        # header is made to say the same.
        ex = _send(envoy, _message(body_ctx), [("x-context-id", mine)])
        assert ex.problems(expect_context_ids=[body_ctx]) == []
        assert ex.report["replica"] == _home(envoy, body_ctx)


@dynamic_only
def test_http2_with_trailers_routes_on_filter_state(envoys):
    envoy = envoys(VERSIONS[0], "maglev")
    ctx = "fs-h2-trailers"
    body = _message(ctx, "t" * 30_000)
    chunks = [body[i:i + 8192] for i in range(0, len(body), 8192)]
    status, raw = send_h2(envoy.port, "/", [("content-type", "application/json")], chunks,
                          trailers=[("x-trailer", "done")])
    assert status == 200, raw[:200]
    got = json.loads(raw)
    assert (got["body_sha256"], got["body_length"], got["context_ids"]) == (
        sha256(body), len(body), [])
    assert got["replica"] == _home(envoy, ctx)


@pytest.mark.skipif(SHELL == "dynamic-module", reason="the dynamic module takes it")
def test_shells_that_only_set_headers_refuse_it_in_one_line(start_envoy):
    shell_name = {"wasm": "the proxy-wasm filter", "ext-proc": "the ext_proc server"}[SHELL]
    line = f'hash_on: "filter_state" is for the Envoy dynamic module only; {shell_name} sets the header'
    with pytest.raises(Exception) as refused:
        start_envoy(filter_state_config(CONFIGS["ring"]), name="filter-state-refused")
    assert line in str(refused.value), str(refused.value)[-2000:]
