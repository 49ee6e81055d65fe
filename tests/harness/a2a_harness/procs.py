"""Ports and child processes."""

import random
import signal
import socket
import subprocess
import time
from pathlib import Path


# Ports this process has handed out. A port is released as soon as
# free_port returns, so asking the kernel for "any port" twice in a row may
# give the same one back; remembering them stops one test from giving Envoy's
# admin and listener the same port.
_handed_out: set[int] = set()
_random = random.Random()

# The ports at 1024 and above that the Fetch standard calls bad
# (https://fetch.spec.whatwg.org/#bad-port). Node's fetch, under the JS A2A
# client, refuses them ("TypeError: fetch failed", cause "bad port"), so a
# replica or an Envoy listening on one cannot be reached from it.
FETCH_BAD_PORTS = frozenset({1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566,
                             6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080})


def _ephemeral_range():
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host="127.0.0.1"):
    """A port free a moment ago that this process has not handed out before
    (the caller binds it right after).

    Ports come from below the kernel's ephemeral range, so that neither
    another bind to port 0 nor an outgoing connection's local port can take
    one between this call and the caller's bind. None is one of
    FETCH_BAD_PORTS."""
    low, _ = _ephemeral_range()
    first = 10000 if low > 20000 else 1024
    if low - first >= 1000:
        for _ in range(200):
            port = _random.randrange(first, low)
            if _usable(port) and _bindable(host, port):
                _handed_out.add(port)
                return port
    while True:  # no room below the ephemeral range: let the kernel choose
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if _usable(port):
            _handed_out.add(port)
            return port


def _usable(port):
    return port not in _handed_out and port not in FETCH_BAD_PORTS


def log_tail(path, lines=150):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def wait_until(predicate, timeout, what, proc=None, log=None, interval=0.05):
    """Poll `predicate` until it holds; fail early if `proc` exits (with the
    tail of its `log`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_tail(log) if log else ""
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{tail}")
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError(f"{what}: not ready after {timeout} s")


def stop_process(proc, grace=10):
    """SIGTERM, then SIGKILL after `grace` seconds; a no-op once it exited."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


def _thread_stopped(stat_file):
    try:
        stat = stat_file.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True  # the thread has exited
    # The state follows the command name, which is in parentheses and may
    # itself hold spaces or parentheses.
    return stat[stat.rindex(")") + 2] in "Tt"


def pause_process(proc, timeout=10):
    """SIGSTOP `proc` and return once every one of its threads has stopped.
    kill() returns as soon as the signal is queued for one thread; the
    others run on until that thread is scheduled and stops them all, which
    on a loaded machine can be long enough for them to answer a request."""
    proc.send_signal(signal.SIGSTOP)
    tasks = Path(f"/proc/{proc.pid}/task")
    wait_until(lambda: all(_thread_stopped(t / "stat") for t in tasks.iterdir()), timeout,
               f"every thread of pid {proc.pid} stopped")
