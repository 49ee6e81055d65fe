"""Fixtures for the agent and client tests without Envoy: demo agent replicas on
free loopback ports (started once per test file, stopped at its end), the
@a2a-js/sdk client as a subprocess, and the figures printed at the end."""

from __future__ import annotations

from typing import Any

import pytest

from a2a_harness import js_client, running_replicas


_figures: list[tuple[str, str]] = []


@pytest.fixture(scope='module')
def one_replica():
    with running_replicas(1, prefix='solo-') as started:
        yield started[0]


@pytest.fixture(scope='module')
def three_replicas():
    with running_replicas(3) as started:
        yield started


@pytest.fixture
def figures():
    """figures(label, text): printed in the terminal summary of the run."""

    def add(label: str, text: str) -> None:
        _figures.append((label, text))

    return add


@pytest.fixture(scope='session', name='js_client')
def js_client_fixture():
    """js_client(urls, transport=..., extra args...) -> the parsed JSON the JS client printed."""
    try:
        js_client.node()
    except js_client.JsClientMissing as e:
        pytest.fail(str(e), pytrace=False)

    def run(urls: list[str], transport: str = 'jsonrpc', *args: str) -> dict[str, Any]:
        return js_client.converse(urls, transport, *args)

    return run


def pytest_terminal_summary(terminalreporter):
    for label, text in _figures:
        terminalreporter.write_line(f'agent {label}: {text}')
