"""The three ways into Envoy that run the same core: the proxy-wasm module,
the Envoy dynamic module and the ext_proc server.

Every shipped configuration and every test config is written for the Wasm
filter. `to_shell` turns one into the same configuration for another shell:
each Wasm filter entry becomes that shell's filter with the same plugin JSON,
taken from the shell's own shipped config (envoy/envoy-dynamic-module.yaml,
envoy/envoy-ext-proc-kgateway.yaml), so the tests run the shapes users get.
The ext_proc one is the shape kgateway renders: a disabled composite filter
at the listener, enabled and given its processing modes per route.

The shell under test is $A2A_SHELL (wasm, dynamic-module, ext-proc; default
wasm): scripts/test.sh runs the end-to-end suites once per shell."""

import copy
import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from .paths import REPO, target_dir
from .procs import free_port, log_tail, stop_process

SHELLS = ("wasm", "dynamic-module", "ext-proc")
WASM_FILTER = "envoy.filters.http.wasm"
DYNAMIC_FILTER = "envoy.filters.http.dynamic_modules"
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
# The http filter of each shell that runs inside Envoy.
FILTER_OF_SHELL = {"wasm": WASM_FILTER, "dynamic-module": DYNAMIC_FILTER}
EXT_PROC_CLUSTER = "a2a_affinity_ext_proc"
DYNAMIC_CONFIG = REPO / "envoy/envoy-dynamic-module.yaml"
EXT_PROC_CONFIG = REPO / "envoy/envoy-ext-proc-kgateway.yaml"
# The compose sandbox's Envoy config of each shell (envoy/sandbox/; the
# compose.<shell>.yaml there mounts it).
SANDBOX_CONFIGS = {"wasm": "envoy/sandbox/envoy.yaml",
                   "dynamic-module": "envoy/sandbox/envoy-dynamic-module.yaml",
                   "ext-proc": "envoy/sandbox/envoy-ext-proc.yaml"}


def current_shell():
    shell = os.environ.get("A2A_SHELL", "wasm")
    if shell not in SHELLS:
        raise ValueError(f"A2A_SHELL={shell!r}: expected one of {', '.join(SHELLS)}")
    return shell


def dynamic_module_path():
    return target_dir() / "release" / "liba2a_affinity_dynamic.so"


def ext_proc_binary():
    return target_dir() / "release" / "a2a-affinity-ext-proc"


def hcm(cfg):
    """The HTTP connection manager of the first listener's first filter chain."""
    return cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def _routes(cfg):
    manager = hcm(cfg)
    for vhost in manager["route_config"]["virtual_hosts"]:
        yield from vhost["routes"]


def _plugin_json(entry):
    """The JSON configuration of a Wasm or dynamic-module filter entry (a
    Wasm filter without one runs on all defaults; None for a dynamic
    module without one)."""
    typed, field = settings_field(entry)
    return typed.get(field, {}).get("value", "{}" if entry["name"] == WASM_FILTER else None)


def _shipped_filters(path, wanted):
    """The http filters of a shipped config other than the router, and the
    typed_per_filter_config of its first route."""
    cfg = yaml.safe_load(path.read_text())
    filters = [f for f in hcm(cfg)["http_filters"] if f["name"] != "envoy.filters.http.router"]
    if not filters:
        raise LookupError(f"{path}: no {wanted} filter")
    per_route = next(_routes(cfg)).get("typed_per_filter_config", {})
    return cfg, filters, per_route


def to_shell(cfg, shell, *, ext_proc_port=None):
    """A copy of `cfg` with each Wasm filter replaced by `shell`'s filter
    carrying the same plugin JSON. For ext-proc, `ext_proc_port` is where
    the server listens; its cluster is added. Returns (config, plugin JSON
    of the first replaced filter, or None when there was no Wasm filter).
    A config with no static listener (its listeners come from LDS) is
    returned as it is: its filters are the LDS resource's."""
    cfg = copy.deepcopy(cfg)
    if not cfg.get("static_resources", {}).get("listeners"):
        return cfg, None
    manager = hcm(cfg)
    wasm = [f for f in manager["http_filters"] if f["name"] == WASM_FILTER]
    if shell == "wasm" or not wasm:
        return cfg, (_plugin_json(wasm[0]) if wasm else None)
    plugin = _plugin_json(wasm[0])
    if shell == "dynamic-module":
        _, shipped, _ = _shipped_filters(DYNAMIC_CONFIG, DYNAMIC_FILTER)
        replacement = []
        for entry in shipped:
            entry = copy.deepcopy(entry)
            entry["typed_config"]["filter_config"]["value"] = plugin
            replacement.append(entry)
        per_route = {}
    else:
        shipped_cfg, shipped, per_route = _shipped_filters(EXT_PROC_CONFIG, "ext_proc")
        replacement = copy.deepcopy(shipped)
        cluster = next(c for c in shipped_cfg["static_resources"]["clusters"]
                       if c["name"] == EXT_PROC_CLUSTER)
        cluster = copy.deepcopy(cluster)
        ext_proc_on_loopback(cluster, ext_proc_port)
        cfg["static_resources"]["clusters"].append(cluster)
        per_route = copy.deepcopy(per_route)
    # The shell's filters take the place of the first Wasm filter; further
    # Wasm instances have no equivalent and go.
    out, placed = [], False
    for f in manager["http_filters"]:
        if f["name"] != WASM_FILTER:
            out.append(f)
        elif not placed:
            out.extend(replacement)
            placed = True
    manager["http_filters"] = out
    if per_route:
        for route in _routes(cfg):
            route.setdefault("typed_per_filter_config", {}).update(copy.deepcopy(per_route))
    return cfg, plugin


def ext_proc_on_loopback(cluster, port):
    """Points an ext_proc server cluster (in place) at 127.0.0.1:`port`,
    a static address however the shipped one was found."""
    cluster["type"] = "STATIC"
    cluster.pop("dns_lookup_family", None)
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    address["socket_address"].update(address="127.0.0.1", port_value=port)


def envoy_environment(shell):
    """Environment additions Envoy needs for `shell`."""
    if shell == "dynamic-module":
        return {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(dynamic_module_path().parent)}
    return {}


class ExtProcServer:
    """One a2a-affinity-ext-proc process with the plugin JSON as its
    --config, on free loopback ports; ready when /healthz answers."""

    def __init__(self, plugin_json, *, workdir, name="ext-proc", task_store=None,
                 extra_args=(), timeout=20, port=None, metrics_port=None):
        self.workdir = Path(workdir)
        self.name = name
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.config_path = self.workdir / f"{name}.json"
        self.config_path.write_text(plugin_json)
        self.log = self.workdir / f"{name}.log"
        binary = ext_proc_binary()
        if not binary.is_file():
            raise FileNotFoundError(f"{binary} is missing: run scripts/build.sh")
        args = [str(binary), "--listen", f"127.0.0.1:{self.port}",
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                "--config", str(self.config_path)]
        if task_store:
            args += ["--task-store", task_store]
        args += list(extra_args)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{name} not healthy after {timeout} s:\n{self.log_tail()}")

    def healthy(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz",
                                        timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as r:
            return r.read().decode()

    def stats(self, prefix="a2a_affinity"):
        """The filter's counters by their short name (`context_found`...), as
        the Envoy shells report them."""
        counters = {}
        for line in self.metrics().splitlines():
            m = re.match(rf"^{re.escape(prefix)}_([a-z_]+)_total (\d+)$", line.strip())
            # The server's own metrics (a2a_affinity_ext_proc_*) are not the
            # filter's counters.
            if m and not m.group(1).startswith("ext_proc_"):
                counters[m.group(1)] = int(m.group(2))
        return counters

    def log_tail(self, lines=100):
        return log_tail(self.log, lines)

    def stop(self, grace=10):
        stop_process(self.proc, grace)


def settings_field(entry):
    """Where an http filter entry of the Wasm filter or the dynamic module
    keeps its JSON configuration: (the typed config holding it, the field's
    name), the field being a StringValue whose `value` is the JSON."""
    if entry["name"] == WASM_FILTER:
        return entry["typed_config"]["config"], "configuration"
    if entry["name"] == DYNAMIC_FILTER:
        return entry["typed_config"], "filter_config"
    raise LookupError(f"{entry['name']} keeps no a2a-affinity configuration")


def edit_settings(entry, **changes):
    """Changes fields of an http filter entry's JSON configuration (the
    Wasm filter's or the dynamic module's) in place."""
    typed, field = settings_field(entry)
    settings = json.loads(typed[field]["value"])
    settings.update(changes)
    typed[field]["value"] = json.dumps(settings)
    return settings


def affinity_filter(filters):
    """The index of the first a2a-affinity filter (the Wasm filter or the
    dynamic module) in a list of http filters, or None."""
    return next((i for i, f in enumerate(filters) if f["name"] in FILTER_OF_SHELL.values()), None)


def plugin_of(cfg):
    """The plugin JSON of the first a2a-affinity filter in `cfg`, whatever
    the shell (None without one)."""
    filters = hcm(cfg)["http_filters"]
    i = affinity_filter(filters)
    return None if i is None else _plugin_json(filters[i])
