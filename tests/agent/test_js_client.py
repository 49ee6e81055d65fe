"""The second, independent A2A client (@a2a-js/sdk, tests/js/converse.mjs)
against the demo agent without Envoy: one replica keeps its conversations on
every transport; three replicas with each request sent to the next lose them.
The replicas' request logs prove which wire format the JS client used."""

from __future__ import annotations

import re

import pytest


TRANSPORTS = ['jsonrpc', 'jsonrpc-0.3', 'rest', 'rest-0.3']
# The demo agent's task ids carry their contextId (a2a_affinity_ids, format
# c1); plain UUIDs are the SDK's own.
TASK_ID = re.compile(
    r'c1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{6}'
    r'|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
)

# Operations the JS client must use per transport (JSON-RPC method, or REST
# method and path with task ids elided) and the A2A-Version it must send.
EXPECTED_WIRE = {
    'jsonrpc': ('1.0', {'SendMessage', 'SendStreamingMessage', 'GetTask', 'CancelTask'}),
    'jsonrpc-0.3': ('0.3', {'message/send', 'message/stream', 'tasks/get', 'tasks/cancel'}),
    'rest': (
        '1.0',
        {'POST /message:send', 'POST /message:stream', 'GET /tasks/*', 'POST /tasks/*:cancel'},
    ),
    'rest-0.3': (
        '0.3',
        {'POST /v1/message:send', 'POST /v1/message:stream', 'GET /v1/tasks/*', 'POST /v1/tasks/*:cancel'},
    ),
}


def compact(s):
    return (
        f"history intact {s['historyIntact']}/{s['conversations']}, follow-ups {s['followupsOk'][0]}/{s['followupsOk'][1]},"
        f" get {s['getsOk'][0]}/{s['getsOk'][1]}, cancel {s['cancelsOk'][0]}/{s['cancelsOk'][1]}, errors {s['errors'] or 'none'}"
    )


def wire_ops(entries):
    versions, ops = set(), set()
    for e in entries:
        if e['path'].startswith('/.well-known/'):
            continue
        versions.add(e['a2a_version'])
        ops.add(e['rpc_method'] or f"{e['method']} {TASK_ID.sub('*', e['path'])}")
    return versions, ops


@pytest.mark.parametrize('transport', TRANSPORTS)
def test_js_client_keeps_history_on_one_replica(one_replica, js_client, transport, figures):
    one_replica.clear_requests()
    out = js_client([one_replica.url], transport, '--conversations', '2', '--followup', 'task-only')
    s = out['summary']
    figures(f'JS client, one replica, {transport}', compact(s))

    assert s['client'] == '@a2a-js/sdk'
    assert s['historyIntact'] == 2, out
    assert s['followupsOk'] == [2, 2]
    assert s['getsOk'] == [10, 10]
    assert s['cancelsOk'] == [2, 2]
    assert s['errors'] == {}
    held = one_replica.contexts()
    for conv in out['conversations']:
        assert conv['replicas'] == [one_replica.name]
        assert [t['agentTurn'] for t in conv['turns']] == list(range(1, 7))
        # The first turn went out without a contextId; the agent minted it.
        assert held[conv['contextId']]['turns'] == 6

    received = one_replica.requests()
    version, ops = EXPECTED_WIRE[transport]
    assert wire_ops(received) == ({version}, ops)
    first_turns = [e for e in received if '"hello"' in e['body']]
    assert len(first_turns) == 2
    assert all('contextId' not in e['body'] and 'context_id' not in e['body'] for e in first_turns)


@pytest.mark.parametrize('transport', ['jsonrpc', 'rest-0.3'])
def test_js_client_round_robin_over_three_replicas_loses_history(three_replicas, js_client, transport, figures):
    urls = [r.url for r in three_replicas]
    out = js_client(urls, transport, '--conversations', '3')
    s = out['summary']
    figures(f'JS client, 3 replicas round-robin per request, {transport}', compact(s))

    assert s['historyIntact'] == 0, out
    assert s['followupsOk'] == [0, 3]
    assert s['getsOk'][0] < s['getsOk'][1]
    assert s['errors'].get('task-not-found', 0) > 0
    holders = {}
    for r in three_replicas:
        for ctx, held in r.contexts().items():
            holders.setdefault(ctx, {})[r.name] = held['turns']
    for conv in out['conversations']:
        assert len(conv['replicas']) == 3
        assert len(holders[conv['contextId']]) > 1
