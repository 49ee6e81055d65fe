"""Several gateways, one task store: two Envoys, each with its own ext_proc
server (as a kgateway installation runs several gateway pods and server
replicas), in front of three replicas of the demo agent (a2a-sdk,
InMemoryTaskStore). Every first turn goes through gateway A, which learns
its task from the agent's answer; every `tasks/get` for it goes through
gateway B. With `--task-store redis://...` (a real redis-server started
here) B finds every task A learned and routes the call to the replica that
holds it, also after B's server restarts; with each server's in-process
store B knows none of them, and the call lands wherever the fallback hash
sends it.

Runs with A2A_SHELL=ext-proc (the other shells keep learned tasks inside
one Envoy)."""

import shutil
import subprocess

import pytest

from a2a_harness import ExtProcServer, current_shell, free_port, wait_until
from e2e_harness import Envoy, fetch, first_turn

pytestmark = pytest.mark.skipif(current_shell() != "ext-proc",
                                reason="a task store shared by gateways is the ext_proc server's")

CONVERSATIONS = 20


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: scripts/setup.sh installs it (Debian package)",
                    pytrace=False)
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def up():
        try:
            import socket
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_until(up, 10, "redis-server answers PING")
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def run(agents, tmp_path, task_store):
    """CONVERSATIONS first turns through A, each task fetched through B,
    then B's server restarted and every task fetched through B again.
    Returns (tasks B found, B's counters, tasks B found after the restart)."""
    tag = "redis" if task_store else "memory"
    a = Envoy("envoy/envoy.yaml", agents, tmp_path, name=f"gateway-a-{tag}", task_store=task_store)
    b = Envoy("envoy/envoy.yaml", agents, tmp_path, name=f"gateway-b-{tag}", task_store=task_store)
    try:
        before = b.stats()
        tasks = []
        for i in range(CONVERSATIONS):
            task = first_turn(a.port, f"conversation {i}")["result"]
            assert task["kind"] == "task" and task["contextId"], task
            tasks.append(task)
        found = sum(fetch(b.port, task) for task in tasks)
        after = b.stats()
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # B's server restarts (a rollout): on the same address, empty memory.
        server = b.ext_proc
        server.stop()
        b.ext_proc = ExtProcServer(server.config_path.read_text(), workdir=tmp_path,
                                   name=f"gateway-b-{tag}-restarted", task_store=task_store,
                                   port=server.port, metrics_port=server.metrics_port)
        wait_until(lambda: fetch(b.port, tasks[0]) or not task_store, 10,
                   "Envoy uses the restarted server")
        found_after_restart = sum(fetch(b.port, task) for task in tasks)
        return found, delta, found_after_restart
    finally:
        a.stop()
        b.stop()


def test_gateways_sharing_redis_route_every_task_the_other_learned(uuid_agents, redis,
                                                                   tmp_path, figures):
    found, delta, restarted = run(uuid_agents, tmp_path, redis)
    alone, alone_delta, alone_restarted = run(uuid_agents, tmp_path, None)
    figures.record("shared-tasks", {
        "summary": f"tasks/get through the other gateway: {found}/{CONVERSATIONS} found with a "
                   f"shared Redis store ({restarted}/{CONVERSATIONS} after its server restarted), "
                   f"{alone}/{CONVERSATIONS} with each server's own store "
                   f"({alone_restarted}/{CONVERSATIONS} after the restart)",
        "redis": {"found": found, "counters": delta, "after_restart": restarted},
        "memory": {"found": alone, "counters": alone_delta, "after_restart": alone_restarted}})
    assert found == CONVERSATIONS, delta
    assert restarted == CONVERSATIONS
    assert delta.get("task_routed") == CONVERSATIONS, delta
    # Without the shared store, B has learned nothing: every call is unknown
    # to it and lands by the fallback hash.
    assert alone_delta.get("task_unknown") == CONVERSATIONS, alone_delta
    assert alone_delta.get("task_routed", 0) == 0, alone_delta
