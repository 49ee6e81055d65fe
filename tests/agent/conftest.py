"""Fixtures for the agent and client tests without Envoy: demo agent replicas on
free loopback ports (started once per test file, stopped at its end), the
@a2a-js/sdk client as a subprocess, and the figures printed at the end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from pathlib import Path
from typing import Any

import pytest


REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from demo import replicas as replica_procs  # noqa: E402


JS_DIR = REPO / 'tests/js'
JS_TIMEOUT = 120
_figures: list[tuple[str, str]] = []


@pytest.fixture(scope='module')
def one_replica():
    with replica_procs.running_replicas(1, prefix='solo-') as started:
        yield started[0]


@pytest.fixture(scope='module')
def three_replicas():
    with replica_procs.running_replicas(3) as started:
        yield started


@pytest.fixture
def figures():
    """figures(label, text): printed in the terminal summary of the run."""

    def add(label: str, text: str) -> None:
        _figures.append((label, text))

    return add


@pytest.fixture(scope='session')
def js_client():
    """js_client(urls, transport=..., extra args...) -> the parsed JSON the JS client printed."""
    node = shutil.which('node')
    if node is None:
        pytest.fail('node is not installed (the @a2a-js/sdk client needs Node.js >= 20)')
    if not (JS_DIR / 'node_modules/@a2a-js/sdk').is_dir():
        pytest.fail(
            'tests/js/node_modules is missing: run scripts/setup.sh (npm ci in tests/js)',
            pytrace=False,
        )

    def run(urls: list[str], transport: str = 'jsonrpc', *args: str) -> dict[str, Any]:
        cmd = [node, str(JS_DIR / 'converse.mjs'), '--transport', transport, *args, *urls]
        done = subprocess.run(  # noqa: S603 - fixed argv
            cmd, cwd=JS_DIR, capture_output=True, text=True, timeout=JS_TIMEOUT, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f'{" ".join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}')
        return json.loads(done.stdout)

    return run


def pytest_terminal_summary(terminalreporter):
    for label, text in _figures:
        terminalreporter.write_line(f'agent {label}: {text}')
