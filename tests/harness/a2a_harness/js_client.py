"""The second, independent A2A client: @a2a-js/sdk (tests/js/converse.mjs),
run with Node.js; it prints its conversations and a summary as JSON."""

import json
import shutil
import subprocess

from .paths import REPO

JS_DIR = REPO / "tests/js"
TIMEOUT_SECS = 120


class JsClientMissing(RuntimeError):
    """Node.js or tests/js/node_modules is missing."""


def node():
    """The node executable, once the client's dependencies are installed."""
    path = shutil.which("node")
    if path is None:
        raise JsClientMissing("node is not installed (the @a2a-js/sdk client needs Node.js >= 20): "
                              "run scripts/setup.sh")
    if not (JS_DIR / "node_modules/@a2a-js/sdk").is_dir():
        raise JsClientMissing("tests/js/node_modules is missing: run scripts/setup.sh "
                              "(npm ci in tests/js)")
    return path


def converse(urls, transport="jsonrpc", *args, timeout=TIMEOUT_SECS):
    """converse.mjs --transport TRANSPORT ARGS URLS -> its parsed JSON; an
    AssertionError (with its stderr) when it fails."""
    cmd = [node(), str(JS_DIR / "converse.mjs"), "--transport", transport, *args, *urls]
    done = subprocess.run(cmd, cwd=JS_DIR, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout)
