"""Start and stop demo agent replicas (demo/agent.py) on loopback ports.

Used by the tests and the demo:

    with running_replicas(3) as replicas:
        urls = [r.url for r in replicas]
        ...
        replicas[0].contexts()   # what replica-1 holds: contextId -> turns, tasks

Every replica is a separate process (its own InMemoryTaskStore and turn
memory), started with the project's Python, and stopped on exit, also when the
body raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .paths import REPO
from .procs import free_port, stop_process


AGENT = REPO / 'demo/agent.py'
# The @a2a-js/sdk agent of the task-id tests (JSON-RPC 1.0, no streaming).
JS_AGENT = REPO / 'tests/js/task_id_agent.mjs'


def _get_json(url: str, timeout: float = 5.0, method: str = 'GET') -> Any:
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return json.load(resp)


class AgentReplica:
    """One demo agent process."""

    def __init__(
        self,
        name: str,
        port: int | None = None,
        public_url: str | None = None,
        host: str = '127.0.0.1',
        stream_delay: float | None = None,
        python: str = sys.executable,
        task_ids: str | None = None,
        sdk: str = 'python',
    ) -> None:
        self.name = name
        self.host = host
        self.port = port or free_port(host)
        self.url = f'http://{host}:{self.port}'
        self.public_url = public_url or self.url
        self.stream_delay = stream_delay
        self.python = python
        self.task_ids = task_ids
        self.sdk = sdk
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix=f'a2a-agent-{name}-', suffix='.log', delete=False
        )

    @property
    def log_path(self) -> str:
        return self._log.name

    def start(self) -> None:
        if self.sdk == 'js':
            from .js_client import node

            cmd = [node(), str(JS_AGENT), '--name', self.name, '--host', self.host,
                   '--port', str(self.port)]
            if self.task_ids is not None:
                cmd += ['--task-ids', self.task_ids]
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
                cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
            )
            return
        cmd = [
            self.python,
            str(AGENT),
            '--name',
            self.name,
            '--host',
            self.host,
            '--port',
            str(self.port),
            '--public-url',
            self.public_url,
        ]
        if self.stream_delay is not None:
            cmd += ['--stream-delay', str(self.stream_delay)]
        if self.task_ids is not None:
            cmd += ['--task-ids', self.task_ids]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f'agent {self.name} exited with {self.proc.returncode}: {self.log_tail()}'
                )
            try:
                _get_json(f'{self.url}/.well-known/agent-card.json', timeout=1.0)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        raise TimeoutError(f'agent {self.name} not ready on {self.url} after {timeout}s')

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = Path(self.log_path).read_text(errors='replace')
        except OSError:
            return ''
        return '\n'.join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, timeout)
        self._log.close()

    def contexts(self) -> dict[str, dict[str, Any]]:
        """contextId -> {"turns": n, "tasks": [...]} held by this replica."""
        return dict(_get_json(f'{self.url}/debug/contexts')['contexts'])

    def requests(self) -> list[dict[str, Any]]:
        """What this replica received since start (or the last clear)."""
        return list(_get_json(f'{self.url}/debug/requests')['requests'])

    def clear_requests(self) -> None:
        _get_json(f'{self.url}/debug/requests', method='DELETE')


@contextlib.contextmanager
def running_replicas(
    count: int,
    public_url: str | None = None,
    ports: Sequence[int] | None = None,
    prefix: str = 'replica-',
    stream_delay: float | None = None,
    ready_timeout: float = 30.0,
    task_ids: str | None = None,
    sdk: str = 'python',
) -> Iterator[list[AgentReplica]]:
    """Start `count` replicas named replica-1..N; stop them all on exit.
    `task_ids`: the agents' `--task-ids` ('context' by default in the
    agent, or 'uuid'). `sdk='js'` starts the @a2a-js/sdk agent of
    tests/js/task_id_agent.mjs instead of demo/agent.py."""
    replicas = [
        AgentReplica(
            f'{prefix}{i + 1}',
            port=ports[i] if ports else None,
            public_url=public_url,
            stream_delay=stream_delay,
            task_ids=task_ids,
            sdk=sdk,
        )
        for i in range(count)
    ]
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready(ready_timeout)
        yield replicas
    finally:
        for r in replicas:
            r.stop()
            with contextlib.suppress(OSError):
                os.unlink(r.log_path)
