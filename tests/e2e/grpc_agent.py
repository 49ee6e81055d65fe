"""A2A gRPC replicas for the end-to-end tests: the demo agent's executor
(demo/agent.py: counts the turns of each context, input-required on "book",
streamed artifacts on "stream") served by a2a-sdk 1.3.0's gRPC handlers, the
1.0 service `lf.a2a.v1.A2AService` and the 0.3 service `a2a.v1.A2AService`
on one port per replica.

Every replica records what it received: the RPC path, the x-context-id
metadata and the request message bytes exactly as they arrived, before the
SDK parses them. The servers run on one asyncio loop in a background thread
of the test process and are stopped by `stop()`."""

from __future__ import annotations

import asyncio
import threading

import grpc
import grpc.aio

from a2a.compat.v0_3 import a2a_v0_3_pb2_grpc
from a2a.compat.v0_3.grpc_handler import CompatGrpcHandler
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.grpc_handler import GrpcHandler
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import a2a_pb2_grpc
from a2a_harness import free_port

from demo.agent import ConversationMemory, ReplicaExecutor, build_card

START_TIMEOUT_SECS = 30


class Recorder(grpc.aio.ServerInterceptor):
    """Keeps each call's path, x-context-id values and raw request bytes."""

    def __init__(self, entries):
        self.entries = entries

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        entry = {
            "method": details.method,
            "x_context_id": [
                v if isinstance(v, str) else v.decode()
                for k, v in (details.invocation_metadata or ())
                if k == "x-context-id"
            ],
            "body": None,
        }
        self.entries.append(entry)
        parse = handler.request_deserializer

        def recording(raw):
            entry["body"] = bytes(raw)
            return parse(raw) if parse else raw

        return handler._replace(request_deserializer=recording)


class GrpcReplicas:
    """`names` replicas on free loopback ports; `.ports` and `.names` as the
    e2e harness's Envoy expects of its upstreams."""

    def __init__(self, names, public_url):
        self.names = list(names)
        self.ports = [free_port() for _ in self.names]
        self.received = {n: [] for n in self.names}
        self.memory = {n: ConversationMemory() for n in self.names}
        self._loop = asyncio.new_event_loop()
        self._servers = []
        self._ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(public_url,), daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_SECS) or self._error:
            self.stop()
            raise RuntimeError(f"gRPC replicas did not start: {self._error}")

    @property
    def by_address(self):
        return {f"127.0.0.1:{p}": n for n, p in zip(self.names, self.ports)}

    def _run(self, public_url):
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start(public_url))
        except Exception as e:  # reported by __init__
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _start(self, public_url):
        for name, port in zip(self.names, self.ports):
            handler = DefaultRequestHandler(
                agent_executor=ReplicaExecutor(name, self.memory[name], 3, 0.05),
                task_store=InMemoryTaskStore(),
                agent_card=build_card(name, public_url),
            )
            server = grpc.aio.server(interceptors=[Recorder(self.received[name])])
            a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(handler), server)
            a2a_v0_3_pb2_grpc.add_A2AServiceServicer_to_server(
                CompatGrpcHandler(handler), server)
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            self._servers.append(server)

    def stop(self):
        async def shutdown():
            for server in self._servers:
                await server.stop(grace=1)

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
