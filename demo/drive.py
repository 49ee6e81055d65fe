#!/usr/bin/env python3
"""Drive multi-turn A2A conversations with the a2a-sdk client and report continuity.

Each conversation, over one transport (JSON-RPC 1.0 or 0.3 names, REST 1.0 or 0.3):
  1. plain turns: the first has no contextId (the agent mints one, or with
     --client-context-id the client supplies one); later turns reuse the
     contextId the agent returned;
  2. one streaming turn ("stream a story");
  3. "book a table": the task stops in input-required, and the follow-up
     ("friday") carries that taskId (with --followup task-only, and no contextId);
  4. "book a room", then CancelTask on it (--no-cancel to skip);
  5. GetTask for every task of the conversation.

The agent (demo/agent.py) answers "<replica>: turn <n> of context ..", so each
answer says which replica served it and how many turns of this conversation
that replica has seen. History is intact when every answer's turn number equals
the client's own count; the conversation stayed on one replica when one
replica name was seen.

    .venv/bin/python demo/drive.py http://127.0.0.1:10000 --conversations 20
    .venv/bin/python demo/drive.py --transport rest-0.3 URL1 URL2 URL3   # each request to the next URL

Importable: `drive(...)` (async), `drive_sync(...)`, `format_table`, `summarize`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import logging
import re
import sys
import time
import uuid

from collections.abc import Callable, Sequence
from typing import Any

import httpx

from a2a.client import (
    A2ACardResolver,
    Client,
    ClientCallContext,
    ClientConfig,
    ClientFactory,
)
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotFoundError
from google.protobuf import json_format


# transport name -> (protocol binding in the agent card, protocol version)
TRANSPORTS: dict[str, tuple[str, str]] = {
    'jsonrpc': ('JSONRPC', '1.0'),
    'jsonrpc-0.3': ('JSONRPC', '0.3'),
    'rest': ('HTTP+JSON', '1.0'),
    'rest-0.3': ('HTTP+JSON', '0.3'),
}

PLAIN_TEXTS = ('hello', 'how are you', 'tell me more', 'and then?', 'go on')
log = logging.getLogger('a2a-affinity.drive')
REPLY = re.compile(r'^(?P<replica>[^:\s]+): turn (?P<turn>\d+) of context')


@dataclasses.dataclass
class Turn:
    kind: str  # plain | stream | book | followup | cancel-book
    text: str
    expected_turn: int
    ok: bool = False
    replica: str | None = None
    agent_turn: int | None = None
    state: str | None = None
    task_id: str | None = None
    context_id: str | None = None
    error: str | None = None
    error_kind: str | None = None
    events: int = 0
    first_event_at: float | None = None
    last_event_sent_at: float | None = None
    target: str | None = None


@dataclasses.dataclass
class TaskCall:
    op: str  # get | cancel
    task_id: str
    ok: bool = False
    state: str | None = None
    replica: str | None = None
    error: str | None = None
    error_kind: str | None = None
    target: str | None = None


@dataclasses.dataclass
class Conversation:
    number: int
    transport: str
    context_id: str | None = None
    supplied_context_id: str | None = None
    turns: list[Turn] = dataclasses.field(default_factory=list)
    calls: list[TaskCall] = dataclasses.field(default_factory=list)
    # Filled by `attach_holders`: replica name -> turns of this context it holds.
    holders: dict[str, int] | None = None

    @property
    def replicas(self) -> list[str]:
        seen: list[str] = []
        for turn in self.turns:
            if turn.replica and turn.replica not in seen:
                seen.append(turn.replica)
        return seen

    @property
    def history_intact(self) -> bool:
        return bool(self.turns) and all(
            t.ok and t.agent_turn == t.expected_turn for t in self.turns
        )

    @property
    def one_replica(self) -> bool:
        return len(self.replicas) == 1 and all(t.ok for t in self.turns)

    def _turns(self, kind: str) -> list[Turn]:
        return [t for t in self.turns if t.kind == kind]

    def _calls(self, op: str) -> list[TaskCall]:
        return [c for c in self.calls if c.op == op]

    @property
    def followups(self) -> tuple[int, int]:
        f = self._turns('followup')
        return sum(t.ok and t.state == 'completed' for t in f), len(f)

    @property
    def gets(self) -> tuple[int, int]:
        g = self._calls('get')
        return sum(c.ok for c in g), len(g)

    @property
    def cancels(self) -> tuple[int, int]:
        c = self._calls('cancel')
        return sum(x.ok for x in c), len(c)

    @property
    def streams(self) -> tuple[int, int]:
        """Streaming turns whose first event arrived before the last was sent."""
        s = self._turns('stream')
        early = sum(
            t.ok
            and t.first_event_at is not None
            and t.last_event_sent_at is not None
            and t.first_event_at < t.last_event_sent_at
            for t in s
        )
        return early, len(s)

    @property
    def context_adopted(self) -> bool | None:
        if self.supplied_context_id is None:
            return None
        return self.context_id == self.supplied_context_id

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(
            replicas=self.replicas,
            history_intact=self.history_intact,
            one_replica=self.one_replica,
            followups_ok=list(self.followups),
            gets_ok=list(self.gets),
            cancels_ok=list(self.cancels),
            streams_early=list(self.streams),
            context_adopted=self.context_adopted,
        )
        return d


def _state_name(state: int) -> str:
    # TASK_STATE_INPUT_REQUIRED -> input-required (the 0.3 spelling, shorter).
    return TaskState.Name(state).removeprefix('TASK_STATE_').lower().replace('_', '-')


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, TaskNotFoundError):
        return 'task-not-found'
    text = str(exc).lower()
    # The 0.3 REST client turns the agent's HTTP 404 for an unknown task into
    # "MethodNotFoundError: Resource not found".
    if 'task' in text and 'not found' in text or 'resource not found' in text:
        return 'task-not-found'
    if 'context' in text and 'does not match' in text:
        return 'context-mismatch'
    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError)) or (
        'timed out' in text
    ):
        return 'timeout'
    return type(exc).__name__


def _parse_reply(text: str) -> tuple[str | None, int | None]:
    m = REPLY.match(text)
    if not m:
        return None, None
    return m.group('replica'), int(m.group('turn'))


def _message_text(msg: Message) -> str:
    return ''.join(p.text for p in msg.parts if p.HasField('text'))


def _sent_at(*structs: Any) -> float | None:
    for s in structs:
        if s is not None and 'sentAt' in s:
            return float(s['sentAt'])
    return None


class Endpoint:
    """The two SDK clients (blocking and streaming) for one agent URL."""

    def __init__(
        self,
        base_url: str,
        transport: str,
        timeout: float,
        use_card_url: bool,
    ) -> None:
        self.base_url = base_url.rstrip('/')
        self.transport = transport
        self.timeout = timeout
        self.use_card_url = use_card_url
        self.url = self.base_url
        self.card_url: str | None = None
        self._http: httpx.AsyncClient | None = None
        self.blocking: Client | None = None
        self.streaming: Client | None = None

    async def open(self) -> None:
        binding, version = TRANSPORTS[self.transport]
        self._http = httpx.AsyncClient(timeout=self.timeout)
        card = await A2ACardResolver(self._http, self.base_url).get_agent_card()
        chosen = [
            i
            for i in card.supported_interfaces
            if i.protocol_binding == binding
            and i.protocol_version.startswith(version)
        ]
        if not chosen:
            raise RuntimeError(
                f'{self.base_url}: agent card has no {binding} {version} interface'
            )
        self.card_url = chosen[0].url.rstrip('/')
        if self.use_card_url:
            self.url = self.card_url
            if self.card_url != self.base_url:
                # Clients send to the card's URL: an agent started without
                # --public-url behind a gateway makes them bypass the gateway.
                log.warning(
                    '%s: the agent card points to %s; sending there'
                    ' (--ignore-card-url to send to the given URL)',
                    self.base_url,
                    self.card_url,
                )
        narrowed = AgentCard()
        narrowed.CopyFrom(card)
        del narrowed.supported_interfaces[:]
        iface = narrowed.supported_interfaces.add()
        iface.CopyFrom(chosen[0])
        iface.url = self.url

        def make(streaming: bool) -> Client:
            config = ClientConfig(
                streaming=streaming,
                supported_protocol_bindings=[binding],
                httpx_client=self._http,
            )
            return ClientFactory(config).create(narrowed)

        self.blocking = make(False)
        self.streaming = make(True)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()


class ConversationRunner:
    """Runs one conversation's script; each request goes to `pick()`'s endpoint."""

    def __init__(
        self,
        conv: Conversation,
        pick: Callable[[], Endpoint],
        followup: str,
        context_header: str | None = None,
    ) -> None:
        self.conv = conv
        self.pick = pick
        self.followup = followup
        self.context_header = context_header

    def _call_context(self) -> ClientCallContext | None:
        # The usual client-side recipe: once the agent has named the context,
        # send it in a header that the gateway hashes.
        if self.context_header and self.conv.context_id:
            return ClientCallContext(
                service_parameters={self.context_header: self.conv.context_id}
            )
        return None

    def _message(self, text: str, task_id: str | None, with_context: bool) -> Message:
        msg = Message(
            message_id=str(uuid.uuid4()),
            role=Role.ROLE_USER,
            parts=[Part(text=text)],
        )
        if with_context and self.conv.context_id:
            msg.context_id = self.conv.context_id
        if task_id:
            msg.task_id = task_id
        return msg

    def _new_turn(self, kind: str, text: str) -> Turn:
        turn = Turn(kind=kind, text=text, expected_turn=len(self.conv.turns) + 1)
        self.conv.turns.append(turn)
        return turn

    def _learn(self, turn: Turn, task_id: str, context_id: str) -> None:
        turn.task_id = task_id or turn.task_id
        turn.context_id = context_id or turn.context_id
        if self.conv.context_id is None and context_id:
            self.conv.context_id = context_id

    def _apply_task(self, turn: Turn, task: Task) -> None:
        self._learn(turn, task.id, task.context_id)
        turn.state = _state_name(task.status.state)
        if task.status.HasField('message'):
            turn.replica, turn.agent_turn = _parse_reply(
                _message_text(task.status.message)
            )

    async def send(
        self,
        kind: str,
        text: str,
        task_id: str | None = None,
        with_context: bool = True,
        first_context_id: str | None = None,
    ) -> Turn:
        turn = self._new_turn(kind, text)
        msg = self._message(text, task_id, with_context)
        if first_context_id:
            msg.context_id = first_context_id
        endpoint = self.pick()
        turn.target = endpoint.url
        try:
            if kind == 'stream':
                await self._stream(endpoint, turn, msg)
            else:
                assert endpoint.blocking is not None
                async for event in endpoint.blocking.send_message(
                    SendMessageRequest(message=msg), context=self._call_context()
                ):
                    turn.events += 1
                    if event.HasField('task'):
                        self._apply_task(turn, event.task)
                    elif event.HasField('message'):
                        self._learn(
                            turn, event.message.task_id, event.message.context_id
                        )
                        turn.replica, turn.agent_turn = _parse_reply(
                            _message_text(event.message)
                        )
            turn.ok = turn.replica is not None
            if not turn.ok and turn.error is None:
                turn.error = 'answer did not name a replica'
        except Exception as exc:  # noqa: BLE001 - recorded per turn, the run goes on
            turn.error = f'{type(exc).__name__}: {exc}'[:300]
            turn.error_kind = _error_kind(exc)
        return turn

    async def _stream(self, endpoint: Endpoint, turn: Turn, msg: Message) -> None:
        assert endpoint.streaming is not None
        last_sent: float | None = None
        event: StreamResponse
        async for event in endpoint.streaming.send_message(
            SendMessageRequest(message=msg), context=self._call_context()
        ):
            now = time.time()
            turn.events += 1
            if turn.first_event_at is None:
                turn.first_event_at = now
            if event.HasField('task'):
                self._apply_task(turn, event.task)
            elif event.HasField('status_update'):
                up = event.status_update
                self._learn(turn, up.task_id, up.context_id)
                turn.state = _state_name(up.status.state)
                if up.status.HasField('message'):
                    turn.replica, turn.agent_turn = _parse_reply(
                        _message_text(up.status.message)
                    )
                sent = _sent_at(
                    json_format.MessageToDict(up.metadata),
                    json_format.MessageToDict(up.status.message.metadata),
                )
                last_sent = sent or last_sent
            elif event.HasField('artifact_update'):
                up = event.artifact_update
                self._learn(turn, up.task_id, up.context_id)
                last_sent = (
                    _sent_at(json_format.MessageToDict(up.artifact.metadata))
                    or last_sent
                )
            elif event.HasField('message'):
                self._learn(turn, event.message.task_id, event.message.context_id)
                turn.replica, turn.agent_turn = _parse_reply(
                    _message_text(event.message)
                )
        turn.last_event_sent_at = last_sent

    async def task_call(self, op: str, task_id: str) -> TaskCall:
        call = TaskCall(op=op, task_id=task_id)
        self.conv.calls.append(call)
        endpoint = self.pick()
        call.target = endpoint.url
        assert endpoint.blocking is not None
        try:
            if op == 'get':
                task = await endpoint.blocking.get_task(
                    GetTaskRequest(id=task_id), context=self._call_context()
                )
            else:
                task = await endpoint.blocking.cancel_task(
                    CancelTaskRequest(id=task_id), context=self._call_context()
                )
            call.state = _state_name(task.status.state)
            if task.status.HasField('message'):
                call.replica, _ = _parse_reply(_message_text(task.status.message))
            call.ok = task.id == task_id and (
                op != 'cancel' or call.state == 'canceled'
            )
            if task.context_id != self.conv.context_id:
                call.ok = False
                call.error = f'task has contextId {task.context_id}'
        except Exception as exc:  # noqa: BLE001 - recorded per call
            call.error = f'{type(exc).__name__}: {exc}'[:300]
            call.error_kind = _error_kind(exc)
        return call

    async def run(
        self,
        plain_turns: int,
        stream: bool,
        book: bool,
        cancel: bool,
        client_context_id: bool,
    ) -> Conversation:
        conv = self.conv
        for i in range(plain_turns):
            first = None
            if i == 0 and client_context_id:
                first = conv.supplied_context_id = str(uuid.uuid4())
            await self.send('plain', PLAIN_TEXTS[i % len(PLAIN_TEXTS)], first_context_id=first)
        if stream:
            await self.send('stream', 'stream a story')
        if book:
            asked = await self.send('book', 'book a table')
            if asked.task_id and asked.state == 'input-required':
                await self.send(
                    'followup',
                    'friday',
                    task_id=asked.task_id,
                    with_context=self.followup == 'with-context',
                )
            else:
                # Record the follow-up that could not be sent as a failed turn.
                turn = self._new_turn('followup', 'friday')
                turn.error = f'booking not in input-required (state {asked.state})'
                turn.error_kind = asked.error_kind or 'no-input-required'
        if cancel:
            asked = await self.send('cancel-book', 'book a room')
            if asked.task_id:
                await self.task_call('cancel', asked.task_id)
        for task_id in dict.fromkeys(t.task_id for t in conv.turns if t.task_id):
            await self.task_call('get', task_id)
        return conv


async def drive(
    base_urls: Sequence[str],
    transport: str = 'jsonrpc',
    conversations: int = 10,
    plain_turns: int = 2,
    stream: bool = True,
    book: bool = True,
    cancel: bool = True,
    followup: str = 'with-context',
    client_context_id: bool = False,
    concurrency: int = 4,
    timeout: float = 15.0,
    use_card_url: bool = True,
    debug_urls: Sequence[str] = (),
    progress: Callable[[Conversation], None] | None = None,
    spread: str = 'request',
    context_header: str | None = None,
) -> list[Conversation]:
    """Run the conversations against one or more base URLs.

    With one URL (a gateway) the gateway decides where each request goes. With
    several, spread='request' sends each request to the next URL, as a load
    balancer without affinity would; spread='conversation' keeps conversation
    n on URL n mod len(URLs), as perfect affinity would.

    context_header (e.g. 'x-context-id'): once the agent has returned the
    contextId, every later request of the conversation carries it in this
    header, the client half of the usual header-hashing recipe.
    """
    if spread not in ('request', 'conversation'):
        raise ValueError("spread is 'request' or 'conversation'")
    if transport not in TRANSPORTS:
        raise ValueError(f'unknown transport {transport!r}; one of {sorted(TRANSPORTS)}')
    if followup not in ('with-context', 'task-only'):
        raise ValueError("followup is 'with-context' or 'task-only'")
    endpoints = [Endpoint(u, transport, timeout, use_card_url) for u in base_urls]
    try:
        for ep in endpoints:
            await ep.open()
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(n: int) -> Conversation:
            start = n % len(endpoints)
            if spread == 'conversation':
                rotation = itertools.repeat(endpoints[start])
            else:
                rotation = itertools.cycle(endpoints[start:] + endpoints[:start])
            conv = Conversation(number=n + 1, transport=transport)
            async with gate:
                await ConversationRunner(
                    conv, lambda: next(rotation), followup, context_header
                ).run(
                    plain_turns, stream, book, cancel, client_context_id
                )
            if progress is not None:
                progress(conv)
            return conv

        results = list(await asyncio.gather(*(one(n) for n in range(conversations))))
        if debug_urls:
            await attach_holders(results, debug_urls, timeout)
        return results
    finally:
        for ep in endpoints:
            await ep.close()


async def attach_holders(
    results: Sequence[Conversation], debug_urls: Sequence[str], timeout: float = 10.0
) -> None:
    """Ask each replica's /debug/contexts which conversations it holds, and how many turns."""
    snapshots: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=timeout) as http:
        for url in debug_urls:
            r = await http.get(url.rstrip('/') + '/debug/contexts')
            r.raise_for_status()
            snapshots.append(r.json())
    for conv in results:
        conv.holders = {}
        if conv.context_id is None:
            continue
        for snap in snapshots:
            held = snap['contexts'].get(conv.context_id)
            if held:
                conv.holders[snap['replica']] = int(held['turns'])


def drive_sync(*args: Any, **kwargs: Any) -> list[Conversation]:
    return asyncio.run(drive(*args, **kwargs))


def _ratio(pair: Sequence[int]) -> str:
    return f'{pair[0]}/{pair[1]}' if pair[1] else '-'


def format_table(results: Sequence[Conversation]) -> str:
    rows = [
        ('#', 'context', 'turns', 'replicas seen', 'history', 'follow-up', 'get', 'cancel', 'stream', 'errors')
    ]
    for c in results:
        errors = sorted({t.error_kind for t in c.turns if t.error_kind} | {x.error_kind for x in c.calls if x.error_kind})
        rows.append(
            (
                str(c.number),
                (c.context_id or '-')[:8],
                str(len(c.turns)),
                ','.join(c.replicas) or '-',
                'intact' if c.history_intact else 'LOST',
                _ratio(c.followups),
                _ratio(c.gets),
                _ratio(c.cancels),
                _ratio(c.streams),
                ','.join(errors) or '-',
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return '\n'.join(
        '  '.join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows
    )


def summarize(results: Sequence[Conversation]) -> dict[str, Any]:
    def total(attr: str) -> list[int]:
        pairs = [getattr(c, attr) for c in results]
        return [sum(p[0] for p in pairs), sum(p[1] for p in pairs)]

    errors: dict[str, int] = {}
    for c in results:
        for kind in [t.error_kind for t in c.turns] + [x.error_kind for x in c.calls]:
            if kind:
                errors[kind] = errors.get(kind, 0) + 1
    adopted = [c.context_adopted for c in results if c.context_adopted is not None]
    n = len(results)
    intact = sum(c.history_intact for c in results)
    return {
        'conversations': n,
        'transport': results[0].transport if results else None,
        'turns': sum(len(c.turns) for c in results),
        'history_intact': intact,
        'continuity_percent': round(100.0 * intact / n, 1) if n else 0.0,
        'one_replica': sum(c.one_replica for c in results),
        'followups_ok': total('followups'),
        'gets_ok': total('gets'),
        'cancels_ok': total('cancels'),
        'streams_first_event_early': total('streams'),
        'client_context_id_adopted': [sum(adopted), len(adopted)] if adopted else None,
        'errors': errors,
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"transport {s['transport']}: {s['conversations']} conversations, {s['turns']} turns",
        f"history intact: {s['history_intact']}/{s['conversations']} ({s['continuity_percent']} %)",
        f"one replica:    {s['one_replica']}/{s['conversations']}",
        f"follow-ups ok:  {_ratio(s['followups_ok'])}   get ok: {_ratio(s['gets_ok'])}"
        f"   cancel ok: {_ratio(s['cancels_ok'])}",
        f"streams with first event before last sent: {_ratio(s['streams_first_event_early'])}",
    ]
    if s['client_context_id_adopted']:
        lines.append(f"client contextId adopted: {_ratio(s['client_context_id_adopted'])}")
    errors = ', '.join(f'{k} {v}' for k, v in sorted(s['errors'].items())) or 'none'
    lines.append(f'errors: {errors}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description='Drive multi-turn A2A conversations with the a2a-sdk client.'
    )
    p.add_argument('urls', nargs='+', help='agent base URL(s); several = each request to the next')
    p.add_argument('--transport', choices=sorted(TRANSPORTS), default='jsonrpc')
    p.add_argument('-n', '--conversations', type=int, default=10)
    p.add_argument('--plain-turns', type=int, default=2)
    p.add_argument('--no-stream', action='store_true')
    p.add_argument('--no-book', action='store_true')
    p.add_argument('--no-cancel', action='store_true')
    p.add_argument(
        '--followup',
        choices=['with-context', 'task-only'],
        default='with-context',
        help='the input-required follow-up carries taskId and contextId, or only taskId',
    )
    p.add_argument('--client-context-id', action='store_true', help='first turn carries a client-made contextId')
    p.add_argument(
        '--spread',
        choices=['request', 'conversation'],
        default='request',
        help='with several URLs: each request to the next URL, or each conversation on one URL',
    )
    p.add_argument(
        '--context-header',
        metavar='NAME',
        help='send the contextId the agent returned in this header on later requests'
        ' (the client half of the usual header-hashing recipe)',
    )
    p.add_argument('--concurrency', type=int, default=4)
    p.add_argument('--timeout', type=float, default=15.0)
    p.add_argument('--ignore-card-url', action='store_true', help='send to the given URL, not the one the agent card advertises')
    p.add_argument('--debug-url', action='append', default=[], help='replica URL whose /debug/contexts to read afterwards (repeatable)')
    p.add_argument('--json', metavar='FILE', help='write per-conversation results and the summary as JSON')
    p.add_argument('--quiet', action='store_true', help='no progress line')
    a = p.parse_args(argv)

    def progress(conv: Conversation) -> None:
        if not a.quiet:
            mark = 'ok' if conv.history_intact else 'LOST'
            print(
                f'  conversation {conv.number:>3}: {len(conv.turns)} turns on'
                f" {','.join(conv.replicas) or '-'} {mark}",
                file=sys.stderr,
                flush=True,
            )

    started = time.monotonic()
    results = drive_sync(
        a.urls,
        transport=a.transport,
        conversations=a.conversations,
        plain_turns=a.plain_turns,
        stream=not a.no_stream,
        book=not a.no_book,
        cancel=not a.no_cancel,
        followup=a.followup,
        client_context_id=a.client_context_id,
        concurrency=a.concurrency,
        timeout=a.timeout,
        use_card_url=not a.ignore_card_url,
        debug_urls=a.debug_url,
        progress=progress,
        spread=a.spread,
        context_header=a.context_header,
    )
    elapsed = time.monotonic() - started
    s = summarize(results)
    s['seconds'] = round(elapsed, 2)
    print(format_table(results))
    print()
    print(format_summary(s))
    if a.debug_url:
        for c in results:
            print(f'  {c.number:>3} {(c.context_id or "-")[:8]} held by {c.holders}')
    if a.json:
        with open(a.json, 'w', encoding='utf-8') as f:
            json.dump({'summary': s, 'conversations': [c.to_dict() for c in results]}, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
