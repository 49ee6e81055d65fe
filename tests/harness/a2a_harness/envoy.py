"""Envoy configurations and processes.

`Envoy` starts one Envoy from a configuration (a dict, YAML text, or a file,
optionally a `string.Template` filled with `substitutions`), waits until
admin `/ready` answers, reads admin stats and clusters, and stops it (also
when the start fails). The helpers above it take the shipped configurations
apart and rewrite them for loopback runs."""

import copy
import itertools
import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from string import Template

import yaml

from .paths import REPO, envoy_binary, module_path
from .procs import log_tail, stop_process
from .shells import (DYNAMIC_FILTER, EXT_PROC_FILTER, ExtProcServer, current_shell,
                     envoy_environment, hcm, to_shell)

WASM_FILTER = "envoy.filters.http.wasm"
# The http filter of each shell; a run "without the filter" drops them all.
SHELL_FILTERS = {WASM_FILTER, DYNAMIC_FILTER, EXT_PROC_FILTER}
START_TIMEOUT_SECS = 30
# Envoys started by one process get distinct base ids (shared memory names),
# so several test runs and benchmarks can share the machine.
_base_ids = itertools.count(start=(os.getpid() % 500) * 20 + 10000)


class EnvoyError(RuntimeError):
    """Envoy exited or did not become ready."""


def load_config(source):
    """A YAML configuration; relative paths are relative to the repository."""
    with open(REPO / source) as f:
        return yaml.safe_load(f)


def render_config(template, values):
    """A configuration template (text, or a file) with `$name` filled from
    `values`. Top-level `x-` keys only carry YAML anchors and are dropped:
    Envoy rejects unknown fields."""
    if isinstance(template, os.PathLike):
        template = Path(template).read_text()
    doc = yaml.safe_load(Template(template).substitute(values))
    return {k: v for k, v in doc.items() if not k.startswith("x-")}


def h2_upstream(cfg):
    """A shipped configuration (`load_config`) with its first cluster, the
    agents', speaking HTTP/2 upstream (gRPC agents, HTTP/2-only servers)."""
    cluster = cfg["static_resources"]["clusters"][0]
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    options["explicit_http_config"] = {"http2_protocol_options": {}}
    return cfg


def http_filters(cfg):
    return hcm(cfg)["http_filters"]


def wasm_plugin(cfg):
    for f in http_filters(cfg):
        if f["name"] == WASM_FILTER:
            return f["typed_config"]["config"]
    raise LookupError("no Wasm filter in the configuration")


def plugin_settings(cfg):
    return json.loads(wasm_plugin(cfg)["configuration"]["value"])


def rewrite_config(cfg, *, listen_port, admin_port, upstream_ports, module=None, plugin=None,
                   with_filter=True, host="127.0.0.1"):
    """A copy of a shipped configuration with only what a run must change:
    the admin, listener and endpoint ports (and addresses, set to `host`
    unless it is None), the Wasm module path (default: module_path()), and
    optionally the Wasm plugin configuration, or no filter of any shell."""
    cfg = copy.deepcopy(cfg)

    def place(socket_address, port):
        socket_address["port_value"] = port
        if host is not None:
            socket_address["address"] = host

    place(cfg["admin"]["address"]["socket_address"], admin_port)
    listener = cfg["static_resources"]["listeners"][0]
    place(listener["address"]["socket_address"], listen_port)
    cluster = cfg["static_resources"]["clusters"][0]
    shipped = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    endpoints = []
    for i, port in enumerate(upstream_ports):
        # Keep each shipped endpoint (and its metadata, e.g. a hash_key) when
        # the counts match; extra replicas copy the first one.
        ep = copy.deepcopy(shipped[i] if len(shipped) == len(upstream_ports) else shipped[0])
        place(ep["endpoint"]["address"]["socket_address"], port)
        endpoints.append(ep)
    cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": endpoints}]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    if not with_filter:
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] not in SHELL_FILTERS]
        return cfg
    if not any(f["name"] == WASM_FILTER for f in hcm["http_filters"]):
        # A config written for another shell (the sandbox's, say): the
        # dynamic module is found on ENVOY_DYNAMIC_MODULES_SEARCH_PATH, the
        # ext_proc server's address is the caller's to set.
        if plugin is not None:
            raise ValueError("a plugin configuration replaces only a Wasm filter's")
        return cfg
    plugin_cfg = wasm_plugin(cfg)
    plugin_cfg["vm_config"]["code"]["local"]["filename"] = str(module or module_path())
    if plugin is not None:
        plugin_cfg["configuration"]["value"] = json.dumps(plugin)
    return cfg


class Envoy:
    """One Envoy process.

    config: a dict, YAML text, or a file (a Path). A dict, text, or a file
    with `substitutions` is written to `<workdir>/<name>.yaml`; a file
    without them is run in place. Output goes to `<workdir>/<name>.log`.
    base_id: None picks the next free one of this process, "dynamic" passes
    --use-dynamic-base-id, an int is passed as is. concurrency None leaves
    Envoy's default (one worker per core). new_session puts Envoy in its
    own session, so a terminal's Ctrl-C reaches only the caller, which stops
    it. The admin port is read from the configuration."""

    def __init__(self, config, *, workdir, name="envoy", binary=None, substitutions=None,
                 concurrency=None, base_id=None, log_level="info", extra_args=(),
                 new_session=False, timeout=START_TIMEOUT_SECS, shell=None, task_store=None):
        self.name = name
        self.workdir = Path(workdir)
        self.binary = str(binary or envoy_binary())
        # The shell that runs the filter ($A2A_SHELL by default): a config
        # written for the Wasm filter is turned into that shell's; ext-proc
        # also starts its server, stopped with Envoy.
        self.shell = shell or current_shell()
        self.ext_proc = None
        env = None
        if self.shell != "wasm":
            if isinstance(config, os.PathLike) and substitutions is None:
                config = yaml.safe_load(Path(config).read_text())
            elif not isinstance(config, dict):
                config = (render_config(config, substitutions) if substitutions is not None
                          else yaml.safe_load(config))
                substitutions = None
            _, plugin = to_shell(config, "wasm")
            if plugin is not None and self.shell == "ext-proc":
                self.ext_proc = ExtProcServer(plugin, workdir=self.workdir, name=f"{name}-ext-proc",
                                              task_store=task_store)
            config, _ = to_shell(config, self.shell,
                                 ext_proc_port=self.ext_proc.port if self.ext_proc else None)
            env = {**os.environ, **envoy_environment(self.shell)}
        if isinstance(config, os.PathLike) and substitutions is None:
            self.config_path = Path(config)
            self.config = yaml.safe_load(self.config_path.read_text())
        else:
            if isinstance(config, (str, os.PathLike)):
                config = (render_config(config, substitutions) if substitutions is not None
                          else yaml.safe_load(config))
            self.config = config
            self.config_path = self.workdir / f"{name}.yaml"
            self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.admin_port = self.config["admin"]["address"]["socket_address"]["port_value"]
        listeners = self.config.get("static_resources", {}).get("listeners") or [{}]
        self.port = listeners[0].get("address", {}).get("socket_address", {}).get("port_value")
        self.log = self.workdir / f"{name}.log"
        if base_id is None:
            base_id = next(_base_ids)
        args = [self.binary, "-c", str(self.config_path), "--log-level", log_level]
        args += ["--use-dynamic-base-id"] if base_id == "dynamic" else ["--base-id", str(base_id)]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        args += list(extra_args)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                         start_new_session=new_session, env=env)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvoyError(f"envoy {self.name} exited with {self.proc.returncode} "
                                 f"(log {self.log}):\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        raise EnvoyError(f"envoy {self.name} not ready after {timeout} s (log {self.log}):\n"
                         f"{self.log_tail()}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, grace=10):
        stop_process(self.proc, grace)
        if self.ext_proc is not None:
            self.ext_proc.stop(grace)

    def log_tail(self, lines=150):
        tail = log_tail(self.log, lines)
        if self.ext_proc is not None:
            tail += f"\n--- {self.ext_proc.name} ---\n" + self.ext_proc.log_tail(lines)
        return tail

    # Admin interface.

    def admin(self, path, timeout=5):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}",
                                    timeout=timeout) as r:
            return r.read().decode()

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready",
                                        timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def counters(self, regex=""):
        """Every integer stat whose name matches `regex`, by full name."""
        out = {}
        path = f"/stats?filter={regex}" if regex else "/stats"
        for line in self.admin(path).splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def stats(self, prefix="a2a_affinity"):
        """The filter's counters, keyed by the name after `<prefix>.`
        (Envoy may prefix custom Wasm stats, e.g. `wasmcustom.`); for the
        ext_proc shell, the server's."""
        if self.ext_proc is not None:
            return self.ext_proc.stats(prefix)
        counters = {}
        for line in self.admin(f"/stats?filter={prefix}").splitlines():
            m = re.match(rf"^(?:.*\.)?{re.escape(prefix)}\.([a-z_]+): (\d+)$", line.strip())
            if m:
                counters[m.group(1)] = int(m.group(2))
        return counters

    def stat(self, name):
        """One counter or gauge by its full name (0 if absent)."""
        for line in self.admin(f"/stats?filter=^{re.escape(name)}$").splitlines():
            if line.startswith(name + ":"):
                return int(line.split(":")[1])
        return 0

    def clusters(self):
        """Admin /clusters as JSON: each cluster's hosts, health and counters."""
        return json.loads(self.admin("/clusters?format=json"))

    # The process, from /proc.

    def cpu_ticks(self):
        """utime + stime in clock ticks."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def rss_kib(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def wasm_memory_kib(self):
        """Size in KiB of every Wasm linear memory in the process (one per
        VM: the main thread's and each worker's). V8 maps a linear memory as
        a read-write mapping followed directly by a guard reservation of
        several GiB with no access; the read-write part grows with
        memory.grow and never shrinks, so it is the VM's memory footprint.
        None if no such pair is found."""
        maps = []
        for line in Path(f"/proc/{self.pid}/maps").read_text().splitlines():
            head = line.split()
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            maps.append((lo, hi, head[1]))
        total, found = 0, False
        for before, guard in zip(maps, maps[1:]):
            if guard[1] - guard[0] >= 4 << 30 and guard[2].startswith("---") \
                    and before[1] == guard[0] and before[2].startswith("rw"):
                total += (before[1] - before[0]) // 1024
                found = True
        return total if found else None

    def perf_record(self, data, seconds, frequency=999):
        """`perf record` attached to this Envoy for `seconds`, into `data`;
        returns the perf process (wait for it)."""
        return subprocess.Popen(
            ["perf", "record", "-q", "-F", str(frequency), "-p", str(self.pid), "-o", str(data),
             "--", "sleep", str(seconds)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
