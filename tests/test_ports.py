"""The test harness's free ports: never one that Node's fetch refuses."""

import json
import random
import shutil
import subprocess

import pytest

from a2a_harness import procs


def test_free_port_skips_the_ports_fetch_calls_bad(monkeypatch):
    # The random choice lands on bad ports first; free_port goes on to the
    # next candidate that is neither bad nor handed out before.
    candidates = iter([10080, 6697, 5060, 10081])
    monkeypatch.setattr(procs._random, "randrange", lambda lo, hi: next(candidates))
    monkeypatch.setattr(procs, "_ephemeral_range", lambda: (32768, 60999))
    monkeypatch.setattr(procs, "_bindable", lambda host, port: True)
    monkeypatch.setattr(procs, "_handed_out", set())
    assert procs.free_port() == 10081


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_node_refuses_the_listed_ports_and_not_others():
    # Node's fetch answers a bad port without connecting, and a closed port
    # with a refused connection: every listed port must be the first, and
    # 2,000 other ports from the range free_port draws from the second.
    others = random.Random(7).sample(sorted(set(range(10000, 32768)) - procs.FETCH_BAD_PORTS),
                                     2000)
    script = """
const ports = JSON.parse(process.argv[1]);
const bad = [];
await Promise.all(ports.map(async (p) => {
  try { await fetch(`http://127.0.0.1:${p}/`, {signal: AbortSignal.timeout(5000)}); }
  catch (e) { if (String(e.cause && e.cause.message).includes('bad port')) bad.push(p); }
}));
console.log(JSON.stringify(bad));
"""
    ports = sorted(procs.FETCH_BAD_PORTS) + others
    out = subprocess.run(["node", "--input-type=module", "-e", script, json.dumps(ports)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert set(json.loads(out)) == procs.FETCH_BAD_PORTS
