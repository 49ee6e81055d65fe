"""The sandbox's verify.sh against the sandbox's own Envoy config of the
shell under test ($A2A_SHELL: envoy.yaml, envoy-dynamic-module.yaml or
envoy-ext-proc.yaml; service names and container ports replaced by loopback
ports) in front of three real demo agents, without Docker: it passes with
the filter, and fails without it, so its checks are real."""

import os
import re
import subprocess

import pytest

from a2a_harness import REPO, ExtProcServer, current_shell, envoy_lb_route, running_replicas
from a2a_harness.shells import EXT_PROC_CLUSTER, SANDBOX_CONFIGS, ext_proc_on_loopback
from e2e_harness import Agents, Envoy

VERIFY = REPO / "envoy/sandbox/verify.sh"
SHELL = current_shell()
SANDBOX_CONFIG = SANDBOX_CONFIGS[SHELL]


@pytest.fixture(scope="module")
def agents():
    with running_replicas(3) as replicas:
        yield Agents(replicas)


@pytest.fixture
def ext_proc_server(tmp_path):
    """The ext_proc server as the sandbox runs it (all defaults), for the
    ext-proc shell; None for the others."""
    if SHELL != "ext-proc":
        yield None
        return
    server = ExtProcServer("{}", workdir=tmp_path, name="sandbox-ext-proc")
    try:
        yield server
    finally:
        server.stop()


def to_loopback_server(server):
    """The config's ext_proc cluster pointed at `server` on loopback."""
    def transform(cfg):
        ext_proc_on_loopback(next(c for c in cfg["static_resources"]["clusters"]
                                  if c["name"] == EXT_PROC_CLUSTER), server.port)
        return cfg
    return transform


def run_verify(envoy, server=None):
    env = {**os.environ, "SANDBOX_NO_COMPOSE": "1", "CONVERSATIONS": "12",
           "ENVOY_URL": f"http://127.0.0.1:{envoy.port}",
           "ADMIN_URL": f"http://127.0.0.1:{envoy.admin_port}"}
    if server is not None:
        env["METRICS_URL"] = f"http://127.0.0.1:{server.metrics_port}"
    return subprocess.run(["bash", str(VERIFY), "--shell", SHELL], env=env, capture_output=True,
                          text=True, timeout=300)


def test_verify_passes_with_the_filter(agents, wasm_module, ext_proc_server, tmp_path):
    envoy = Envoy(SANDBOX_CONFIG, agents, tmp_path, name="sandbox",
                  transform=to_loopback_server(ext_proc_server) if ext_proc_server else None)
    try:
        out = run_verify(envoy, ext_proc_server)
    finally:
        envoy.stop()
    assert out.returncode == 0, out.stdout + out.stderr + envoy.log_tail(40)
    assert "OK: 12 conversations" in out.stdout
    landed = dict(re.findall(r"context (\S+)\s+3 turns on (replica-\d)", out.stdout))
    assert len(landed) == 12, out.stdout
    # The sandbox hashes each replica's hash_key (its service name), not its
    # address: envoy-lb, told only the hash keys, predicts every landing.
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"127.0.0.1:{port} hash_key={name}\n"
                             for name, port in zip(agents.names, agents.ports)))
    by_port = {f"127.0.0.1:{p}": n for n, p in zip(agents.names, agents.ports)}
    predicted = envoy_lb_route("--lb", "ring", "--hosts-file", str(hosts), keys=list(landed))
    assert {key: by_port[host] for key, host in predicted.items()} == landed


def test_verify_fails_without_the_filter(agents, tmp_path):
    envoy = Envoy(SANDBOX_CONFIG, agents, tmp_path, name="sandbox-alone", with_filter=False)
    try:
        out = run_verify(envoy)
    finally:
        envoy.stop()
    assert out.returncode != 0, out.stdout
    assert "FAIL:" in out.stderr
