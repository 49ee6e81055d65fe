"""Two instances of the filter in one Wasm VM: envoy/envoy.yaml with a second
copy of the Wasm filter in the chain, the same `vm_id` and module, and its
own configuration (another header name). Envoy then runs both plugins in one
VM per worker, each with its own root context, so every stream must be
served by the instance whose filter it passes through: both headers arrive,
each set from the body, and each instance counts the request."""

import copy
import json

import pytest

from a2a_harness import WASM_FILTER, http_filters, load_config
from e2e_harness import Exchange, counter_delta, send_all

SECOND_HEADER = "x-conversation"
JSON = ("content-type", "application/json")


@pytest.fixture(scope="module")
def envoy(start_envoy, wasm_module):
    cfg = load_config("envoy/envoy.yaml")
    filters = http_filters(cfg)
    first = next(i for i, f in enumerate(filters) if f["name"] == WASM_FILTER)
    second = copy.deepcopy(filters[first])
    plugin = second["typed_config"]["config"]
    settings = json.loads(plugin["configuration"]["value"])
    settings.update(header=SECOND_HEADER, mint_context_id=False)
    plugin["configuration"]["value"] = json.dumps(settings)
    plugin["name"] = "a2a_affinity_second"
    plugin["vm_config"]["code"]["local"]["filename"] = str(wasm_module)
    assert plugin["vm_config"]["vm_id"] == filters[first]["typed_config"]["config"]["vm_config"]["vm_id"]
    filters.insert(first + 1, second)
    return start_envoy(cfg, name="two-instances", plugin={"mint_context_id": False})


def message(ctx, text="hello"):
    msg = {"messageId": "m-1", "role": "user", "parts": [{"kind": "text", "text": text}]}
    if ctx is not None:
        msg["contextId"] = ctx
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                       "params": {"message": msg}}).encode()


def second_header(ex):
    return [v for n, v in ex.report["headers"] if n == SECOND_HEADER]


def test_one_vm_serves_both_instances(envoy, start_envoy):
    # As many VMs as with one instance of the filter: the second instance
    # runs in the same VMs (one per thread), not in VMs of its own.
    alone = start_envoy("envoy/envoy.yaml", name="one-instance")
    gauge = "wasm.envoy.wasm.runtime.v8.active"
    assert envoy.stat(gauge) == alone.stat(gauge) > 0


def test_each_instance_sets_its_own_header_from_the_body(envoy):
    sent = [Exchange(body=message(f"two-instances-{i}", "x" * (i * 700)), headers=[JSON],
                     context_id=f"two-instances-{i}") for i in range(12)]
    before = envoy.stats()
    send_all(envoy.port, sent, 4)
    delta = counter_delta(before, envoy.stats())
    problems = [p for ex in sent for p in ex.problems()]
    problems += [f"{ex.describe()}: {SECOND_HEADER} {second_header(ex)!r}"
                 for ex in sent if ex.report and second_header(ex) != [ex.context_id]]
    assert not problems, "\n".join(problems)
    # Both instances count into the same counters.
    assert delta.get("context_found") == 2 * len(sent), delta


def test_a_body_without_context_gets_neither_header(envoy):
    # Minting is off in both: nothing to set, and the body arrives intact.
    ex = Exchange(body=message(None), headers=[JSON])
    send_all(envoy.port, [ex], 1)
    assert ex.problems(expect_context_ids=[]) == []
    assert second_header(ex) == []
