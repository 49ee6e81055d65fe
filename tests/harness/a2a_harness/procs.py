"""Ports and child processes."""

import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port(host="127.0.0.1"):
    """A port the kernel had free a moment ago (the caller binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
