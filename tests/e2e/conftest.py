"""Fixtures for the end-to-end tests: the release module (never built here:
scripts/test.sh builds it first), upstream replicas, and Envoy processes
started from the shipped configurations, stopped at the end of each test
file, with their log attached to any failing test's report."""

import json
import time

import pytest

from a2a_harness import (REPO, current_shell, dynamic_module_path, ext_proc_binary, module_path,
                         running_replicas)
from e2e_harness import Agents, Envoy, Figures, Upstreams

REPLICAS = ["replica-1", "replica-2", "replica-3"]
SHELL = current_shell()
FIGURES_FILE = REPO / ("out/e2e-figures.json" if SHELL == "wasm" else f"out/e2e-figures-{SHELL}.json")
# Suites about the proxy-wasm module itself (its VM, its callbacks, the
# Envoy versions that load it), about every shipped config at once (the
# dynamic module's and ext_proc's included), or about Envoy without any
# filter: they run once, with A2A_SHELL=wasm.
WASM_ONLY = {"test_baseline", "test_configs"}


def pytest_collection_modifyitems(config, items):
    if SHELL == "wasm":
        return
    skip = pytest.mark.skip(reason=f"about the Wasm module, every shipped config (each shell's) or Envoy "
                                   f"alone: runs once, with A2A_SHELL=wasm, not {SHELL}")
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in WASM_ONLY:
            item.add_marker(skip)
_figures = Figures()
# Envoy processes per test file, for the failure report.
_envoys_by_module = {}


def _built(path, what):
    if not path.is_file():
        pytest.fail(f"{what} {path} is missing: run scripts/build.sh "
                    "(scripts/test.sh builds it before the tests)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def shell_artifact():
    """The shell's own artifact, when it is not the Wasm module: checked
    before any Envoy starts, so that a missing one fails with one line
    rather than with Envoy's load error or a server that never answers."""
    if SHELL == "dynamic-module":
        return _built(dynamic_module_path(), "the dynamic module")
    if SHELL == "ext-proc":
        return _built(ext_proc_binary(), "the ext_proc server")
    return None


@pytest.fixture(scope="session")
def wasm_module(shell_artifact):
    """The release Wasm module: every shell's pass asks for it wherever it
    starts Envoy with a filter (the shell's own artifact is checked
    first)."""
    return _built(module_path(), "the filter module")


@pytest.fixture(scope="session")
def upstreams(tmp_path_factory):
    ups = Upstreams(REPLICAS, tmp_path_factory.mktemp("upstreams"))
    yield ups
    ups.stop()


@pytest.fixture(scope="module")
def uuid_agents():
    """Three demo-agent replicas with plain UUID task ids: only what a
    gateway learned can route a task call to the replica that holds it (ids
    that carry their context need nothing learned: test_task_ids.py)."""
    with running_replicas(3, task_ids="uuid") as replicas:
        yield Agents(replicas)


@pytest.fixture(scope="module")
def start_envoy(request, upstreams, tmp_path_factory):
    """start_envoy(config, name=..., binary=..., plugin=..., with_filter=...)
    starts Envoy once; every Envoy started in a test file is stopped when
    the file is done."""
    workdir = tmp_path_factory.mktemp("envoy")
    started = _envoys_by_module.setdefault(request.module.__name__, [])

    def start(config, *, name, with_filter=True, **kwargs):
        if with_filter:
            request.getfixturevalue("wasm_module")
        envoy = Envoy(config, upstreams, workdir, name=name, with_filter=with_filter, **kwargs)
        started.append(envoy)
        return envoy

    yield start
    for envoy in started:
        envoy.stop()
    started.clear()


@pytest.fixture(scope="session")
def figures():
    """Figures of the full run; written to out/e2e-figures.json at the end."""
    yield _figures
    if _figures.runs:
        FIGURES_FILE.parent.mkdir(exist_ok=True)
        doc = {"written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "command": f"A2A_SHELL={SHELL} .venv/bin/python -m pytest -q tests/e2e",
               "shell": SHELL, "runs": _figures.runs}
        FIGURES_FILE.write_text(json.dumps(doc, indent=2) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for envoy in _envoys_by_module.get(item.module.__name__, []):
            rep.sections.append((f"envoy {envoy.name} log (last lines)", envoy.log_tail()))


def pytest_terminal_summary(terminalreporter):
    for key, run in sorted(_figures.runs.items()):
        if "summary" in run:
            terminalreporter.write_line(f"e2e [{SHELL}] {key}: {run['summary']}")
    if _figures.runs:
        terminalreporter.write_line(f"e2e figures written to {FIGURES_FILE.relative_to(REPO)}")

