"""Two instances of the filter in one chain: envoy/envoy.yaml with a second
copy of the filter after the first, with its own configuration (another
header name). Every stream must be served by each instance it passes
through: both headers arrive, each set from the body, and each instance
counts the request.

With the Wasm filter both copies name the same `vm_id` and module, so Envoy
runs both plugins in one VM per worker, each with its own root context. With
the dynamic module both load the one shared library, each with a filter
configuration of its own. The ext_proc server has one configuration for all
the filters that call it, so the suite does not apply to it."""

import copy
import json

import pytest

from a2a_harness import (FILTER_OF_SHELL, WASM_FILTER, affinity_filter, current_shell, edit_settings,
                         http_filters, to_shell)
from e2e_harness import Exchange, counter_delta, send_all

SHELL = current_shell()
pytestmark = pytest.mark.skipif(SHELL == "ext-proc",
                                reason="the ext_proc server has one configuration for every filter")
SECOND_HEADER = "x-conversation"
JSON = ("content-type", "application/json")


def with_a_second_instance(cfg):
    """`cfg` in the shell under test, with a copy of its filter after the
    first, setting SECOND_HEADER and minting nothing."""
    cfg, _ = to_shell(cfg, SHELL)
    filters = http_filters(cfg)
    first = affinity_filter(filters)
    assert filters[first]["name"] == FILTER_OF_SHELL[SHELL]
    second = copy.deepcopy(filters[first])
    edit_settings(second, header=SECOND_HEADER, mint_context_id=False)
    if SHELL == "wasm":
        second["typed_config"]["config"]["name"] = "a2a_affinity_second"
    filters.insert(first + 1, second)
    return cfg


@pytest.fixture(scope="module")
def envoy(start_envoy):
    return start_envoy("envoy/envoy.yaml", name="two-instances", plugin={"mint_context_id": False},
                       transform=with_a_second_instance)


def message(ctx, text="hello"):
    msg = {"messageId": "m-1", "role": "user", "parts": [{"kind": "text", "text": text}]}
    if ctx is not None:
        msg["contextId"] = ctx
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                       "params": {"message": msg}}).encode()


def second_header(ex):
    return [v for n, v in ex.report["headers"] if n == SECOND_HEADER]


@pytest.mark.skipif(SHELL != "wasm", reason="about Wasm VMs")
def test_one_vm_serves_both_instances(envoy, start_envoy):
    # As many VMs as with one instance of the filter: the second instance
    # runs in the same VMs (one per thread), not in VMs of its own.
    first, second = [f["typed_config"]["config"] for f in http_filters(envoy.config)
                     if f["name"] == WASM_FILTER]
    assert first["vm_config"]["vm_id"] == second["vm_config"]["vm_id"]
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
    before = envoy.stats()
    send_all(envoy.port, [ex], 1)
    assert ex.problems(expect_context_ids=[]) == []
    assert second_header(ex) == []
    # Both instances read it and found nothing to route by.
    assert counter_delta(before, envoy.stats()).get("context_absent") == 2
