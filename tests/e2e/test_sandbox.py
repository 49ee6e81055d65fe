"""The sandbox's verify.sh against the sandbox's own envoy.yaml (service
names and container ports replaced by loopback ports) in front of three real
demo agents, without Docker: it passes with the filter, and fails without it,
so its checks are real."""

import os
import re
import subprocess

import pytest

from a2a_harness import REPO, envoy_lb_route, running_replicas
from e2e_harness import Envoy

VERIFY = REPO / "envoy/sandbox/verify.sh"


class Agents:
    def __init__(self, replicas):
        self.names = [r.name for r in replicas]
        self.ports = [r.port for r in replicas]


@pytest.fixture(scope="module")
def agents():
    with running_replicas(3) as replicas:
        yield Agents(replicas)


def run_verify(envoy):
    env = {**os.environ, "SANDBOX_NO_COMPOSE": "1", "CONVERSATIONS": "12",
           "ENVOY_URL": f"http://127.0.0.1:{envoy.port}",
           "ADMIN_URL": f"http://127.0.0.1:{envoy.admin_port}"}
    return subprocess.run(["bash", str(VERIFY)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_verify_passes_with_the_filter(agents, wasm_module, tmp_path):
    envoy = Envoy("envoy/sandbox/envoy.yaml", agents, tmp_path, name="sandbox")
    try:
        out = run_verify(envoy)
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
    envoy = Envoy("envoy/sandbox/envoy.yaml", agents, tmp_path, name="sandbox-alone",
                  with_filter=False)
    try:
        out = run_verify(envoy)
    finally:
        envoy.stop()
    assert out.returncode != 0, out.stdout
    assert "FAIL:" in out.stderr
