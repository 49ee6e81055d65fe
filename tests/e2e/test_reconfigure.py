"""A new filter configuration while traffic flows, as a control plane pushes
one: envoy/envoy.yaml with its listener served from a file (LDS), then that
file replaced by the same listener with another filter configuration (a
different header name). New connections must get the new configuration; a
request already held by the filter when the change lands must finish under
the old one, body intact; nothing may fail in between, and the filter's
counters go on from where they were.

Then the tasks the filter learned, in front of three replicas of the demo
agent: a push that changes `task_ttl_secs`, (the dynamic module) one that
changes `task_capacity`, and a push and its rollback inside the drain time
must keep them, also once the listeners they replaced have drained: every
`tasks/get` still reaches the replica that holds its task. While a replaced
listener drains, a task learned on a new connection is routed on one of
the old configuration's connections too.

The Wasm filter keeps its VMs and gives the new configuration a root context
of its own. The dynamic module stays loaded and gets a new filter
configuration beside the old one, which the streams begun under it keep.
The ext_proc server takes its configuration from its own command line, not
from Envoy's listener, so the test does not apply to it."""

import hashlib
import http.client
import json
import os
import re
import time

import pytest
import yaml

from a2a_harness import (FILTER_OF_SHELL, affinity_filter, current_shell, edit_settings,
                         settings_field, to_shell, wait_until)
from e2e_harness import Envoy, Exchange, fetch, first_turn, send_all

SHELL = current_shell()
pytestmark = pytest.mark.skipif(SHELL == "ext-proc",
                                reason="the ext_proc server's configuration is its own, not the listener's")

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
NEW_HEADER = "x-conversation"
JSON = ("content-type", "application/json")


def write_lds(folder, listener, version):
    doc = {"version_info": str(version), "resources": [{"@type": LISTENER_TYPE, **listener}]}
    staged = folder / "lds.yaml.next"
    staged.write_text(yaml.safe_dump(doc, sort_keys=False))
    # Envoy watches the directory for a file moved into place.
    os.replace(staged, folder / "lds.yaml")


def filter_entry(listener):
    """The a2a-affinity filter of the listener, in the shell under test."""
    filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    entry = filters[affinity_filter(filters)]
    assert entry["name"] == FILTER_OF_SHELL[SHELL], entry
    return entry


def listener_from_a_file(folder, served):
    """A transform for Envoy's configuration: its listener served from
    `folder/lds.yaml` (LDS), and kept in `served["listener"]`."""

    def transform(cfg):
        # The shell's filter in place of the Wasm one, before the listener
        # leaves the static config (the launcher converts static listeners).
        cfg, _ = to_shell(cfg, SHELL)
        listener = cfg["static_resources"].pop("listeners")[0]
        served["listener"] = listener
        write_lds(folder, listener, 1)
        # A dynamic resource needs a node identity, as under a control plane.
        cfg["node"] = {"id": "a2a-affinity-test", "cluster": "a2a-affinity-test"}
        cfg["dynamic_resources"] = {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": str(folder / "lds.yaml"),
                                   "watched_directory": {"path": str(folder)}},
        }}
        return cfg

    return transform


@pytest.fixture(scope="module")
def envoy(start_envoy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lds")
    served = {}
    envoy = start_envoy("envoy/envoy.yaml", name="reconfigure", plugin={"mint_context_id": False},
                        transform=listener_from_a_file(folder, served))
    envoy.lds_folder = folder
    envoy.listener = served["listener"]
    return envoy


def message(ctx, text="hello"):
    """A message/send whose contextId comes after its text part."""
    msg = {"messageId": "m-1", "role": "user", "parts": [{"kind": "text", "text": text}],
           "contextId": ctx}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                       "params": {"message": msg}}).encode()


def headers_of(ex, name):
    return [v for n, v in ex.report["headers"] if n == name]


def test_new_connections_get_the_new_configuration_and_a_held_request_the_old(envoy):
    fresh = [Exchange(body=message(f"before-{i}"), headers=[JSON], context_id=f"before-{i}")
             for i in range(6)]
    send_all(envoy.port, fresh, 2)
    assert [p for ex in fresh for p in ex.problems()] == []
    assert all(headers_of(ex, NEW_HEADER) == [] for ex in fresh)
    found_before = envoy.stats().get("context_found", 0)
    vms = envoy.stat("wasm.envoy.wasm.runtime.v8.active")
    updates = envoy.stat("listener_manager.lds.update_success")

    # A request the filter is holding: headers and the first half of a body
    # whose contextId comes at its end.
    held_body = message("held-across-the-change", "x" * 40_000)
    half = len(held_body) // 2
    held = HeldRequest(envoy.port, len(held_body), held_body[:half])
    time.sleep(0.3)

    listener = json.loads(json.dumps(envoy.listener))
    entry = filter_entry(listener)
    typed, field = settings_field(entry)
    assert "header" not in json.loads(typed[field]["value"])
    edit_settings(entry, header=NEW_HEADER)
    write_lds(envoy.lds_folder, listener, 2)

    deadline = time.monotonic() + 20
    while envoy.stat("listener_manager.lds.update_success") <= updates:
        assert time.monotonic() < deadline, "Envoy did not take the new listener"
        time.sleep(0.1)
    # Probe on new connections until the new configuration answers; every
    # probe, whichever configuration served it, must arrive whole and
    # carrying its own contextId in exactly one of the two headers.
    probes = []
    while True:
        ex = Exchange(body=message(f"probe-{len(probes)}"), headers=[JSON])
        send_all(envoy.port, [ex], 1)
        probes.append(ex)
        assert ex.problems(expect_context_ids=ex.report["context_ids"]) == []
        both = ex.report["context_ids"] + headers_of(ex, NEW_HEADER)
        assert both == [f"probe-{len(probes) - 1}"], ex.report
        if headers_of(ex, NEW_HEADER):
            break
        assert time.monotonic() < deadline, "new connections still get the old configuration"
        time.sleep(0.1)

    report = held.send_rest(held_body[half:])
    assert (report["body_length"], report["body_sha256"]) == (
        len(held_body), hashlib.sha256(held_body).hexdigest())
    assert report["context_ids"] == ["held-across-the-change"]
    assert [v for n, v in report["headers"] if n == NEW_HEADER] == []

    after = [Exchange(body=message(f"after-{i}"), headers=[JSON]) for i in range(6)]
    send_all(envoy.port, after, 2)
    assert [p for ex in after for p in ex.problems(expect_context_ids=[])] == []
    assert [headers_of(ex, NEW_HEADER) for ex in after] == [[f"after-{i}"] for i in range(6)]
    # Every request since the first count, under either configuration, is
    # counted once, in the same counter.
    assert envoy.stats()["context_found"] - found_before == len(probes) + 1 + len(after)
    if SHELL == "wasm":
        # The same VMs serve the new configuration.
        assert envoy.stat("wasm.envoy.wasm.runtime.v8.active") == vms


CONVERSATIONS = 20


@pytest.fixture(scope="module")
def agent_envoy(uuid_agents, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lds-agents")
    served = {}
    # A listener a push replaces drains for three seconds, not Envoy's
    # default ten minutes: then its filter configuration, and with it
    # anything only it holds, is gone.
    envoy = Envoy("envoy/envoy.yaml", uuid_agents, tmp_path_factory.mktemp("envoy-agents"),
                  name="reconfigure-tasks", transform=listener_from_a_file(folder, served),
                  extra_args=("--drain-time-s", "3"))
    envoy.lds_folder = folder
    envoy.listener = served["listener"]
    envoy.version = 1
    yield envoy
    envoy.stop()


@pytest.fixture(scope="module")
def learned(agent_envoy):
    """First turns through the filter, which learns each task from the
    agent's answer; every one found again before any push."""
    tasks = [first_turn(agent_envoy.port, f"conversation {i}")["result"]
             for i in range(CONVERSATIONS)]
    assert all(task["kind"] == "task" and task["contextId"] for task in tasks), tasks
    assert sum(fetch(agent_envoy.port, task) for task in tasks) == CONVERSATIONS
    return tasks


def push(envoy, **changes):
    """Serves the listener with these filter settings."""
    listener = json.loads(json.dumps(envoy.listener))
    edit_settings(filter_entry(listener), **changes)
    updates = envoy.stat("listener_manager.lds.update_success")
    envoy.version += 1
    write_lds(envoy.lds_folder, listener, envoy.version)
    wait_until(lambda: envoy.stat("listener_manager.lds.update_success") > updates, 20,
               "Envoy takes the new listener")
    envoy.listener = listener


def drained(envoy):
    """Waits until the listener the last push replaced has drained."""
    wait_until(lambda: envoy.stat("listener_manager.total_filter_chains_draining") == 0
               and envoy.stat("listener_manager.total_listeners_draining") == 0, 20,
               "the replaced listener drains")


def push_and_drain(envoy, **changes):
    push(envoy, **changes)
    drained(envoy)


class HeldRequest:
    """A JSON POST of `length` body bytes of which only `start` is sent: the
    filter holds it, under the configuration of the connection it came on,
    until `send_rest`."""

    def __init__(self, port, length, start):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.putrequest("POST", "/", skip_accept_encoding=True)
        self.conn.putheader("content-type", "application/json")
        self.conn.putheader("content-length", str(length))
        self.conn.endheaders()
        self.conn.send(start)

    def send_rest(self, rest):
        """The rest of the body; the decoded answer, which must be a 200."""
        self.conn.send(rest)
        response = self.conn.getresponse()
        doc = json.loads(response.read())
        self.conn.close()
        assert response.status == 200, doc
        return doc


class HeldFirstTurn(HeldRequest):
    """A first turn whose body is half sent."""

    def __init__(self, port, text):
        body = json.dumps({"jsonrpc": "2.0", "id": "held", "method": "message/send",
                           "params": {"message": {
                               "kind": "message", "messageId": "held-first-turn",
                               "role": "user",
                               "parts": [{"kind": "text", "text": text}]}}}).encode()
        half = len(body) // 2
        super().__init__(port, len(body), body[:half])
        self.rest = body[half:]

    def finish(self):
        """The rest of the body; the agent's task."""
        return self.send_rest(self.rest)["result"]


class HeldTaskGet(HeldRequest):
    """A `tasks/get` sent up to its task id, which the agents make a UUID (36
    characters, so the length is known before the task is), until `finish`
    names the task."""

    PREFIX = b'{"jsonrpc":"2.0","id":"held-get","method":"tasks/get","params":{"id":"'
    SUFFIX = b'"}}'

    def __init__(self, port):
        super().__init__(port, len(self.PREFIX) + 36 + len(self.SUFFIX), self.PREFIX)

    def finish(self, task):
        """The task id and the rest; the agent's answer."""
        task_id = task["id"].encode()
        assert len(task_id) == 36, task
        return self.send_rest(task_id + self.SUFFIX)


def took_over(envoy):
    """The dynamic module's log lines for a store that took over the tasks
    of another."""
    return [line for line in envoy.log.read_text().splitlines()
            if "took over from the store of" in line]


def check_tasks_found(envoy, tasks):
    before = envoy.stats()
    assert sum(fetch(envoy.port, task) for task in tasks) == len(tasks)
    after = envoy.stats()
    assert after.get("task_routed", 0) - before.get("task_routed", 0) == len(tasks)
    assert after.get("task_unknown", 0) == before.get("task_unknown", 0)


def test_a_new_time_to_live_keeps_the_learned_tasks(agent_envoy, learned):
    # A first turn begun before the change and answered after it: the old
    # configuration learns its task, after the new one has taken over.
    held = HeldFirstTurn(agent_envoy.port, "begun before the change")
    time.sleep(0.3)
    push(agent_envoy, task_ttl_secs=7200)
    late = held.finish()
    drained(agent_envoy)
    if SHELL == "dynamic-module":
        assert any("task_ttl_secs 7200 took over from the store of task_capacity 262144, "
                   f"task_ttl_secs 3600; learned tasks taken over: {CONVERSATIONS}" in line
                   for line in took_over(agent_envoy)), took_over(agent_envoy)
    check_tasks_found(agent_envoy, learned + [late])
    # What the new configuration learns is found as well.
    more = [first_turn(agent_envoy.port, f"later {i}")["result"] for i in range(5)]
    check_tasks_found(agent_envoy, learned + [late] + more)


@pytest.mark.skipif(SHELL == "wasm", reason="the Wasm filter places a task in Envoy's shared "
                    "data by task_capacity: a new capacity does not find the old entries")
def test_a_new_capacity_keeps_the_learned_tasks(agent_envoy, learned):
    push_and_drain(agent_envoy, task_capacity=100_000)
    kept = [int(m.group(1)) for line in took_over(agent_envoy)
            if (m := re.search(r"store of task_capacity 100000, task_ttl_secs \d+ took over from "
                               r"the store of task_capacity 262144, task_ttl_secs \d+; learned "
                               r"tasks taken over: (\d+)", line))]
    # The first turns, and whatever the test before learned.
    assert len(kept) == 1 and kept[0] >= CONVERSATIONS, took_over(agent_envoy)
    check_tasks_found(agent_envoy, learned)


def test_a_push_and_its_rollback_keep_what_was_learned_in_between(agent_envoy, learned):
    # Settings X, then Y, then X again before X's first listener has
    # drained: the dynamic module gives the third configuration X's store
    # again, which must take over what Y learned.
    x = agent_envoy.listener
    push(agent_envoy, task_ttl_secs=1800)
    under_y = [first_turn(agent_envoy.port, f"under y {i}")["result"] for i in range(5)]
    agent_envoy.listener = x
    push(agent_envoy)
    drained(agent_envoy)
    if SHELL == "dynamic-module":
        # At least the five first turns under Y (all of Y's, should X's
        # first listener have drained before the rollback).
        taken = [int(m.group(1)) for line in took_over(agent_envoy)[-1:]
                 if (m := re.search(r"task_ttl_secs 1800; learned tasks taken over: (\d+)", line))]
        assert taken and taken[0] >= 5, took_over(agent_envoy)
    check_tasks_found(agent_envoy, learned + under_y)


def test_each_configuration_finds_the_tasks_the_other_learns_while_both_live(agent_envoy,
                                                                            learned):
    # Requests on connections of the configuration a push replaces, held
    # from before the push: they finish under it while its listener drains.
    held = [HeldTaskGet(agent_envoy.port) for _ in range(3)]
    time.sleep(0.3)
    push(agent_envoy, task_ttl_secs=5400)
    # First turns on new connections: the new configuration learns their
    # tasks, which the held requests then ask for.
    fresh = [first_turn(agent_envoy.port, f"new side {i}")["result"] for i in range(3)]
    before = agent_envoy.stats()
    answers = [h.finish(task) for h, task in zip(held, fresh)]
    after = agent_envoy.stats()
    assert [(a.get("result") or {}).get("id") for a in answers] == [t["id"] for t in fresh], \
        answers
    assert after.get("task_routed", 0) - before.get("task_routed", 0) == len(fresh)
    assert after.get("task_unknown", 0) == before.get("task_unknown", 0)
    drained(agent_envoy)
    check_tasks_found(agent_envoy, learned + fresh)
