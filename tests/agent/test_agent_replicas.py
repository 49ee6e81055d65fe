"""The demo agent and the a2a-sdk driver without Envoy.

One replica keeps every conversation (history, input-required follow-ups,
GetTask, CancelTask, streaming) on all four transports. Three replicas with
each request sent to the next one, what a load balancer without affinity does,
lose history and answer TaskNotFound: the loss the filter exists to prevent.
Each test also checks what the replicas received (/debug/requests) and what
they hold (/debug/contexts).
"""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from demo import drive


TRANSPORTS = ['jsonrpc', 'jsonrpc-0.3', 'rest', 'rest-0.3']
# The demo agent's task ids carry their contextId (a2a_affinity_ids, format
# c1); plain UUIDs are the SDK's own.
TASK_ID = re.compile(
    r'c1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{6}'
    r'|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
)

# What each transport must put on the wire: protocol version header, and the
# operations (JSON-RPC method, or REST method and path with task ids elided).
EXPECTED_WIRE = {
    'jsonrpc': ('1.0', {'SendMessage', 'SendStreamingMessage', 'GetTask', 'CancelTask'}),
    'jsonrpc-0.3': ('0.3', {'message/send', 'message/stream', 'tasks/get', 'tasks/cancel'}),
    'rest': (
        '1.0',
        {'POST /message:send', 'POST /message:stream', 'GET /tasks/*', 'POST /tasks/*:cancel'},
    ),
    'rest-0.3': (
        '0.3',
        {
            'POST /v1/message:send',
            'POST /v1/message:stream',
            'GET /v1/tasks/*',
            'POST /v1/tasks/*:cancel',
        },
    ),
}


def wire_ops(entries):
    """(A2A-Version values, operations) of the A2A requests a replica received."""
    versions, ops = set(), set()
    for e in entries:
        if e['path'].startswith('/.well-known/'):
            continue
        versions.add(e['a2a_version'])
        ops.add(e['rpc_method'] or f"{e['method']} {TASK_ID.sub('*', e['path'])}")
    return versions, ops


def run(urls, **kwargs):
    kwargs.setdefault('timeout', 15.0)
    return asyncio.run(drive.drive(urls, **kwargs))


@pytest.mark.parametrize('followup', ['with-context', 'task-only'])
@pytest.mark.parametrize('transport', TRANSPORTS)
def test_one_replica_keeps_every_conversation(one_replica, transport, followup, figures):
    one_replica.clear_requests()
    results = run([one_replica.url], transport=transport, conversations=3, followup=followup)
    s = drive.summarize(results)
    figures(f'one replica {transport} follow-up {followup}', drive.format_summary(s).replace('\n', '; '))

    assert s['history_intact'] == 3, drive.format_table(results)
    assert s['one_replica'] == 3
    assert {r for c in results for r in c.replicas} == {one_replica.name}
    assert s['followups_ok'] == [3, 3]
    assert s['cancels_ok'] == [3, 3]
    # plain x2, stream, book, cancel-book: five tasks; the follow-up reuses the book task.
    assert s['gets_ok'] == [15, 15]
    assert s['streams_first_event_early'] == [3, 3]
    assert s['errors'] == {}
    for conv in results:
        assert [t.agent_turn for t in conv.turns] == list(range(1, 7))
        assert [t.state for t in conv.turns] == [
            'completed', 'completed', 'completed', 'input-required', 'completed', 'input-required'
        ]
        assert {c.state for c in conv.calls if c.op == 'cancel'} == {'canceled'}

    # The replica's side: it holds each conversation with all its turns and tasks.
    held = one_replica.contexts()
    for conv in results:
        assert held[conv.context_id]['turns'] == len(conv.turns)
        assert set(held[conv.context_id]['tasks']) == {t.task_id for t in conv.turns}

    # The wire: the transport's own protocol version and operation names.
    received = one_replica.requests()
    version, ops = EXPECTED_WIRE[transport]
    assert wire_ops(received) == ({version}, ops)
    followups = [
        e for e in received
        if '"friday"' in e['body'] or '"text": "friday"' in e['body']
    ]
    assert len(followups) == 3
    for e in followups:
        has_context = 'contextId' in e['body'] or 'context_id' in e['body']
        assert has_context == (followup == 'with-context'), e['body']


@pytest.mark.parametrize('transport', TRANSPORTS)
def test_agent_adopts_a_client_supplied_context_id(one_replica, transport):
    one_replica.clear_requests()
    results = run(
        [one_replica.url], transport=transport, conversations=2, client_context_id=True
    )
    held = one_replica.contexts()
    received = one_replica.requests()
    for conv in results:
        assert conv.supplied_context_id is not None
        assert conv.context_adopted, (conv.supplied_context_id, conv.context_id)
        assert conv.history_intact, drive.format_table(results)
        assert held[conv.supplied_context_id]['turns'] == len(conv.turns)
        # The first request of the conversation already carried the contextId.
        first = next(e for e in received if '"hello"' in e['body'] and conv.supplied_context_id in e['body'])
        assert first['method'] == 'POST'


@pytest.mark.parametrize('transport', TRANSPORTS)
def test_unknown_task_id_is_task_not_found(one_replica, transport):
    from a2a.types import CancelTaskRequest, GetTaskRequest, Message, Part, Role, SendMessageRequest

    one_replica.clear_requests()
    unknown = str(uuid.uuid4())

    async def calls():
        endpoint = drive.Endpoint(one_replica.url, transport, timeout=10.0, use_card_url=True)
        await endpoint.open()
        kinds = {}
        try:
            for op, call in [
                ('get', lambda: endpoint.blocking.get_task(GetTaskRequest(id=unknown))),
                ('cancel', lambda: endpoint.blocking.cancel_task(CancelTaskRequest(id=unknown))),
            ]:
                try:
                    await call()
                    kinds[op] = 'succeeded'
                except Exception as exc:  # noqa: BLE001 - the kind is the result
                    kinds[op] = drive._error_kind(exc)
            msg = Message(
                message_id=str(uuid.uuid4()), role=Role.ROLE_USER,
                parts=[Part(text='friday')], task_id=unknown,
            )
            try:
                async for _ in endpoint.blocking.send_message(SendMessageRequest(message=msg)):
                    pass
                kinds['follow-up'] = 'succeeded'
            except Exception as exc:  # noqa: BLE001
                kinds['follow-up'] = drive._error_kind(exc)
        finally:
            await endpoint.close()
        return kinds

    kinds = asyncio.run(calls())
    assert kinds == {'get': 'task-not-found', 'cancel': 'task-not-found', 'follow-up': 'task-not-found'}
    # All three reached the replica and named the unknown task.
    carrying = [e for e in one_replica.requests() if unknown in e['path'] or unknown in e['body']]
    assert len(carrying) == 3
    assert unknown not in one_replica.contexts()


@pytest.mark.parametrize('transport', TRANSPORTS)
def test_round_robin_over_three_replicas_loses_history(three_replicas, transport, figures):
    urls = [r.url for r in three_replicas]
    for r in three_replicas:
        r.clear_requests()
    spread = run(urls, transport=transport, conversations=6, spread='request', debug_urls=urls)
    pinned = run(urls, transport=transport, conversations=6, spread='conversation', debug_urls=urls)
    s_spread, s_pinned = drive.summarize(spread), drive.summarize(pinned)
    figures(f'3 replicas round-robin per request, {transport}', drive.format_summary(s_spread).replace('\n', '; '))
    figures(f'3 replicas, one replica per conversation, {transport}', drive.format_summary(s_pinned).replace('\n', '; '))

    # Each request to the next replica: turn 2 already meets a replica that
    # has seen one turn of the context, and the follow-up and most task calls
    # reach a replica that never saw the task.
    assert s_spread['history_intact'] == 0, drive.format_table(spread)
    assert s_spread['one_replica'] == 0
    assert s_spread['followups_ok'] == [0, 6]
    assert s_spread['cancels_ok'][0] < s_spread['cancels_ok'][1]
    assert s_spread['gets_ok'][0] < s_spread['gets_ok'][1]
    assert s_spread['errors'].get('task-not-found', 0) > 0
    for conv in spread:
        assert len(conv.replicas) == 3
        assert len(conv.holders) > 1, conv.holders
        assert sum(conv.holders.values()) < len(conv.turns) + 1

    # The same replicas with every request of a conversation on one replica.
    assert s_pinned['history_intact'] == 6, drive.format_table(pinned)
    assert s_pinned['followups_ok'] == [6, 6]
    assert s_pinned['gets_ok'] == [30, 30]
    assert s_pinned['cancels_ok'] == [6, 6]
    assert s_pinned['errors'] == {}
    for conv in pinned:
        assert conv.holders == {conv.replicas[0]: len(conv.turns)}

    # Every replica took part in both runs.
    for r in three_replicas:
        assert wire_ops(r.requests())[1] <= EXPECTED_WIRE[transport][1]
        assert r.requests(), r.name
