#!/usr/bin/env python3
"""A real A2A agent (a2a-sdk 1.3.0) that shows which replica served a turn.

Each replica keeps the turns of every conversation (contextId) in process and
the SDK's InMemoryTaskStore keeps its tasks, exactly the state that is lost
when a turn of a conversation reaches another replica. Every answer names the
replica and the turn number this replica has seen for the context:

    replica-2: turn 3 of context 4f1c9a2e..; history: hello | how are you | stream a story

Flows, chosen by the first word of the user's text:
  book ...    the task stops in input-required ("which date?"); the next
              message must carry that taskId, and completes the booking.
  stream ...  the reply comes as several artifact chunks with small delays,
              so a streaming client sees the first event before the last is sent.
  anything    one task, completed with the reply.

Served on one port: JSON-RPC at "/" (1.0 method names, and 0.3 names through
the SDK's compatibility layer), REST (1.0 routes and the 0.3 "/v1/..." routes),
the agent card at /.well-known/agent-card.json, GET /debug/contexts (the
contexts this replica holds, with turn counts) and GET /debug/requests (what
this replica received: path, headers of interest, body; DELETE clears it).

    .venv/bin/python demo/agent.py --name replica-1 --port 9101 \
        --public-url http://127.0.0.1:10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import json
import time

from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from a2a.helpers import new_text_part
from a2a.server.agent_execution import (
    AgentExecutor,
    RequestContext,
    SimpleRequestContextBuilder,
)
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import (
    create_agent_card_routes,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Task,
    TaskState,
    TaskStatus,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from a2a_affinity_ids import ContextTaskIdGenerator


log = logging.getLogger('a2a-affinity.agent')

# Shown in the reply; the full list stays in /debug/contexts.
HISTORY_SHOWN = 8
# Bounds of the request log behind /debug/requests.
REQUESTS_KEPT = 5000
BODY_KEPT = 65536


class ConversationMemory:
    """The turns of every context this replica has served, in arrival order."""

    def __init__(self) -> None:
        self.turns: dict[str, list[str]] = {}
        self.tasks_by_context: dict[str, list[str]] = {}

    def record(self, context_id: str, task_id: str, text: str) -> int:
        turns = self.turns.setdefault(context_id, [])
        turns.append(text)
        tasks = self.tasks_by_context.setdefault(context_id, [])
        if task_id not in tasks:
            tasks.append(task_id)
        return len(turns)

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {
            ctx: {
                'turns': len(turns),
                'tasks': list(self.tasks_by_context.get(ctx, [])),
            }
            for ctx, turns in self.turns.items()
        }


class RequestLog:
    """ASGI middleware keeping what this replica received, for tests to check.

    Each entry has the HTTP method, path, the A2A-Version and x-context-id
    headers, the body as received (up to BODY_KEPT bytes) and, for JSON-RPC,
    the method name: enough to prove which binding and protocol version a
    client used, and what a gateway in front inserted.
    """

    def __init__(self, app: Any, entries: deque[dict[str, Any]]) -> None:
        self.app = app
        self.entries = entries

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope['type'] != 'http' or scope['path'].startswith('/debug/'):
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode('latin-1').lower(): v.decode('latin-1')
            for k, v in scope.get('headers', [])
        }
        entry: dict[str, Any] = {
            'at': time.time(),
            'method': scope['method'],
            'path': scope['path'],
            'query': scope.get('query_string', b'').decode('latin-1'),
            'a2a_version': headers.get('a2a-version'),
            'x_context_id': [
                v.decode('latin-1')
                for k, v in scope.get('headers', [])
                if k.lower() == b'x-context-id'
            ],
            'content_length': headers.get('content-length'),
            'rpc_method': None,
            'body': '',
        }
        self.entries.append(entry)
        body = bytearray()

        async def recording_receive() -> Any:
            message = await receive()
            if message['type'] == 'http.request':
                room = BODY_KEPT - len(body)
                if room > 0:
                    body.extend(message.get('body', b'')[:room])
                if not message.get('more_body', False):
                    entry['body'] = body.decode('utf-8', 'replace')
                    entry['rpc_method'] = _rpc_method(entry['body'])
            return message

        await self.app(scope, recording_receive, send)


def _rpc_method(body: str) -> str | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get('method'), str):
        return doc['method']
    return None


class ReplicaExecutor(AgentExecutor):
    """Answers every turn with the replica name and this replica's turn count."""

    def __init__(
        self,
        replica: str,
        memory: ConversationMemory,
        stream_chunks: int,
        stream_delay: float,
    ) -> None:
        self.replica = replica
        self.memory = memory
        self.stream_chunks = stream_chunks
        self.stream_delay = stream_delay

    def _reply(self, context_id: str, turn: int, extra: str = '') -> str:
        turns = self.memory.turns.get(context_id, [])
        shown = ' | '.join(turns[-HISTORY_SHOWN:])
        if len(turns) > HISTORY_SHOWN:
            shown = '... | ' + shown
        text = (
            f'{self.replica}: turn {turn} of context {context_id[:8]}..;'
            f' history: {shown}'
        )
        return f'{text}; {extra}' if extra else text

    @staticmethod
    def _stamp() -> dict[str, object]:
        # Wall-clock send time of each event, so a test on the same host can
        # check that a streamed event reached it before the last one was sent.
        return {'sentAt': time.time()}

    async def execute(
        self, context: RequestContext, event_queue: EventQueue
    ) -> None:
        task = context.current_task
        task_id = context.task_id or ''
        # A follow-up that names only its taskId gets a fresh contextId from
        # the request context; the conversation is the one of the stored task
        # (A2A 1.0 section 3.4.3: infer contextId from the task).
        context_id = task.context_id if task else (context.context_id or '')
        text = context.get_user_input().strip()
        turn = self.memory.record(context_id, task_id, text)
        updater = TaskUpdater(event_queue, task_id, context_id)

        def agent_text(body: str) -> Message:
            return updater.new_agent_message(
                [new_text_part(body)], metadata=self._stamp()
            )

        if task is None:
            # The V2 handler needs a Task on the queue before any status
            # update (e.g. input-required) that refers to it.
            first = Task(
                id=task_id,
                context_id=context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
            )
            if context.message is not None:
                first.history.append(context.message)
            await event_queue.enqueue_event(first)

        pending = task is not None and (
            task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        )
        word = text.split(maxsplit=1)[0].lower() if text else ''

        if pending:
            await updater.complete(
                agent_text(self._reply(context_id, turn, f'booked for {text}'))
            )
        elif word == 'book':
            await updater.requires_input(
                agent_text(self._reply(context_id, turn, 'which date?'))
            )
        elif word == 'stream':
            await updater.start_work(
                agent_text(self._reply(context_id, turn, 'streaming'))
            )
            for chunk in range(1, self.stream_chunks + 1):
                await asyncio.sleep(self.stream_delay)
                await updater.add_artifact(
                    [new_text_part(f'chunk {chunk} of {self.stream_chunks}')],
                    artifact_id='story',
                    name='story',
                    metadata=self._stamp(),
                    append=chunk > 1,
                    last_chunk=chunk == self.stream_chunks,
                )
            await updater.update_status(
                TaskState.TASK_STATE_COMPLETED,
                message=agent_text(self._reply(context_id, turn, 'streamed')),
                metadata=self._stamp(),
            )
        else:
            await updater.complete(agent_text(self._reply(context_id, turn)))

    async def cancel(
        self, context: RequestContext, event_queue: EventQueue
    ) -> None:
        task = context.current_task
        task_id = context.task_id or (task.id if task else '')
        context_id = task.context_id if task else (context.context_id or '')
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.cancel(
            updater.new_agent_message(
                [new_text_part(f'{self.replica}: canceled')]
            )
        )


def build_card(replica: str, public_url: str) -> AgentCard:
    url = public_url.rstrip('/')
    interfaces = [
        AgentInterface(url=url, protocol_binding=binding, protocol_version=ver)
        for ver in ('1.0', '0.3')
        for binding in ('JSONRPC', 'HTTP+JSON')
    ]
    return AgentCard(
        name=f'a2a-affinity demo agent ({replica})',
        description=(
            'Counts the turns of each conversation it has seen; shows which'
            ' replica answered.'
        ),
        version='1.0.0',
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[
            AgentSkill(
                id='count-turns',
                name='Count turns',
                description='Answers with the replica name and turn number.',
                tags=['demo'],
                examples=['hello', 'book a table', 'stream a story'],
            )
        ],
    )


def build_app(
    replica: str,
    public_url: str,
    stream_chunks: int = 4,
    stream_delay: float = 0.15,
    task_ids: str = 'context',
) -> Starlette:
    """The agent's app. `task_ids`: 'context' mints task ids that carry
    their contextId (agents/python, a2a_affinity_ids), so any a2a-affinity
    gateway routes task-only calls without learning; 'uuid' keeps the SDK's
    plain UUIDs."""
    memory = ConversationMemory()
    received: deque[dict[str, Any]] = deque(maxlen=REQUESTS_KEPT)
    card = build_card(replica, public_url)
    handler = DefaultRequestHandler(
        agent_executor=ReplicaExecutor(
            replica, memory, stream_chunks, stream_delay
        ),
        task_store=InMemoryTaskStore(),
        agent_card=card,
        request_context_builder=SimpleRequestContextBuilder(
            should_populate_referred_tasks=False,
            task_id_generator=(
                ContextTaskIdGenerator() if task_ids == 'context' else None
            ),
        ),
    )

    async def debug_contexts(_: Request) -> JSONResponse:
        return JSONResponse(
            {'replica': replica, 'contexts': memory.snapshot()}
        )

    async def debug_requests(request: Request) -> JSONResponse:
        if request.method == 'DELETE':
            received.clear()
        return JSONResponse({'replica': replica, 'requests': list(received)})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        log.info('%s serving, card url %s', replica, public_url)
        yield
        await handler.aclose()

    # Own routes first: the REST routes end with a catch-all "/{tenant}" mount.
    routes = [
        Route('/debug/contexts', debug_contexts, methods=['GET']),
        Route('/debug/requests', debug_requests, methods=['GET', 'DELETE']),
    ]
    routes += create_agent_card_routes(card)
    routes += create_jsonrpc_routes(handler, '/', enable_v0_3_compat=True)
    routes += create_rest_routes(handler, enable_v0_3_compat=True)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequestLog, entries=received)],
    )
    app.state.memory = memory
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--name',
        default=os.environ.get('A2A_REPLICA_NAME', 'replica-1'),
        help='replica name shown in every answer (env A2A_REPLICA_NAME)',
    )
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument(
        '--port', type=int, default=int(os.environ.get('A2A_PORT', '9101'))
    )
    parser.add_argument(
        '--public-url',
        default=os.environ.get('A2A_PUBLIC_URL'),
        help='URL the agent card advertises (e.g. the Envoy listener);'
        ' default http://HOST:PORT',
    )
    parser.add_argument('--stream-chunks', type=int, default=4)
    parser.add_argument(
        '--stream-delay',
        type=float,
        default=0.15,
        help='seconds between streamed chunks',
    )
    parser.add_argument(
        '--task-ids',
        choices=['context', 'uuid'],
        default=os.environ.get('A2A_TASK_IDS', 'context'),
        help="'context': task ids carry their contextId (any gateway routes"
        " task calls by it); 'uuid': the SDK's plain UUIDs (env A2A_TASK_IDS)",
    )
    parser.add_argument('--log-level', default='warning')
    parser.add_argument('--access-log', action='store_true')
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(),
        format=f'%(asctime)s {args.name} %(levelname)s %(message)s',
        stream=sys.stderr,
    )
    public_url = args.public_url or f'http://{args.host}:{args.port}'
    app = build_app(
        args.name,
        public_url,
        args.stream_chunks,
        args.stream_delay,
        task_ids=args.task_ids,
    )
    # Longer than Envoy's upstream idle timeout, so Envoy closes idle
    # connections first and never reuses one the agent has just closed.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        timeout_keep_alive=300,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
