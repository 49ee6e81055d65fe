"""bench/run.py's arithmetic on made-up cells: which run of (a) each ratio
is taken against, and the spread it reports; how bench/instructions.py
reads a callgrind dump; the configurations a run with a filter-state
variant renders; and the routing check every run makes before its load."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_bench(name):
    """bench/<name>.py as a module (bench/ on the path while it loads, for
    its own imports)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def run():
    return load_bench("run")


def cell(variant, rnd, rps, cpu, upstream=50.0):
    c = {"variant": variant, "size": "1k", "position": "first", "round": rnd, "requests": int(rps * 5),
         "rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "front_cpu_us_per_req": cpu, "front_cpu_util": 0.8,
         "upstream_cpu_us_per_req": upstream, "errors": {}}
    return c


def variants_of(summary):
    (only,) = summary
    return only["variants"]


def test_a_round_compares_with_its_own_run_of_a(run):
    cells = [cell("client_header", 0, 1000, 100), cell("lua", 0, 800, 125),
             cell("client_header", 1, 500, 200), cell("lua", 1, 450, 250),
             cell("client_header", 2, 1000, 100), cell("lua", 2, 900, 110)]
    rows = variants_of(run.summarise(cells, ["client_header", "lua"], [("1k", "first")]))
    # Per-round ratios 0.8, 0.9, 0.9: median 0.9; too few rounds for quartiles.
    assert rows["lua"]["ratio_to_client_header"] == pytest.approx(0.9)
    assert rows["lua"]["ratio_quartiles"] is None
    # CPU: 100/125, 200/250, 100/110.
    assert rows["lua"]["cpu_ratio_to_client_header"] == pytest.approx(0.8)
    assert rows["client_header"]["rps"] == 1000


def test_the_quartiles_show_from_four_rounds_on(run):
    def table(rounds):
        cells = []
        for r in range(rounds):
            cells += [cell("client_header", r, 1000, 100), cell("lua", r, 800 + 100 * r, 120)]
        summary = run.summarise(cells, ["client_header", "lua"], [("1k", "first")])
        meta = {"date": "d", "envoy_version": "1.40.0", "threads": 1, "connections": 16, "duration_s": 5,
                "rounds": rounds, "nproc": 2, "cpu_model": "cpu", "loadavg_before": "0", "loadavg_after": "0",
                "module": "m", "module_bytes": 1, "module_sha256": "0" * 64, "git_commit": "0" * 40}
        return run.markdown(meta, summary, ["client_header", "lua"], [], None, [])

    assert "| 1k | first | 1000 req/s | 0.90 |" in table(3)
    # Ratios 0.8, 0.9, 1.0, 1.1, 1.2: quartiles 0.9 and 1.1.
    assert "| 1k | first | 1000 req/s | 1.00 [0.90-1.10] |" in table(5)


def test_the_upstream_gauge_cancels_the_machine_speed_of_each_run(run):
    # The machine runs at a different speed in each run: the upstream's CPU
    # per request moves with the front's. Lua costs 1.25 times (a) in
    # upstream units in every round, whatever the raw figures.
    cells = [cell("client_header", 0, 1000, 100, upstream=50), cell("lua", 0, 800, 250, upstream=100),
             cell("client_header", 1, 500, 200, upstream=100), cell("lua", 1, 800, 125, upstream=50),
             cell("client_header", 2, 700, 150, upstream=75), cell("lua", 2, 600, 187.5, upstream=75),
             cell("client_header", 3, 900, 120, upstream=60), cell("lua", 3, 700, 300, upstream=120)]
    rows = variants_of(run.summarise(cells, ["client_header", "lua"], [("1k", "first")]))
    # Raw CPU ratios 0.4, 1.6, 0.8, 0.4 spread; gauged, every round is 0.8.
    assert rows["lua"]["cpu_ratio_to_client_header"] == pytest.approx(0.6)
    assert rows["lua"]["metered_ratio_to_client_header"] == pytest.approx(0.8)
    assert rows["lua"]["metered_quartiles"] == pytest.approx((0.8, 0.8))
    assert rows["client_header"]["metered_ratio_to_client_header"] == 1.0


def test_the_gauge_compares_the_filter_with_each_alternative_and_counts_the_ext_proc_server(run):
    h = cell("ext_proc", 0, 900, 100, upstream=50)
    h["gateway_cpu_us_per_req"] = 150.0
    cells = [cell("client_header", 0, 1000, 90, upstream=50), h,
             cell("lua", 0, 800, 200, upstream=40)]
    rows = variants_of(run.summarise(cells, ["client_header", "ext_proc", "lua"], [("1k", "first")]))
    # (h) costs 150/50 = 3 upstream units (front and server), (a) 1.8, Lua 5.
    assert rows["ext_proc"]["metered_ratio_to_client_header"] == pytest.approx(0.6)
    assert rows["lua"]["ext_proc_metered_over_this"] == pytest.approx(5 / 3)
    # Too few rounds for quartiles; none without the upstream's figure.
    assert rows["ext_proc"]["metered_quartiles"] is None
    assert run.metered_cpu(cell("lua", 0, 1, 10, upstream=None)) is None


def test_a_run_of_some_cases_and_alternatives_gets_the_targets_it_has_figures_for(run):
    # Only 1 KiB with the contextId first, and Lua the only alternative.
    cells = []
    for r in range(3):
        cells += [cell("client_header", r, 1000, 40), cell("dynamic_module", r, 860, 48),
                  cell("lua", r, 850, 49)]
    variants = ["client_header", "dynamic_module", "lua"]
    summary = run.summarise(cells, variants, [("1k", "first")])
    rows = {t["target"]: t for t in run.targets(summary, variants)}
    assert sorted(rows) == ["dynamic_module / client header, 1k contextId first",
                            "dynamic_module / lua (never slower), 1k first"]
    header = rows["dynamic_module / client header, 1k contextId first"]
    assert (header["goal"], header["measured"], header["met"]) == (0.95, pytest.approx(0.86), False)
    assert header["cpu_measured"] == pytest.approx(40 / 48)
    lua = rows["dynamic_module / lua (never slower), 1k first"]
    assert (lua["goal"], lua["measured"], lua["met"]) == (1.0, pytest.approx(860 / 850), True)
    assert (lua["cpu_measured"], lua["cpu_met"]) == (pytest.approx(49 / 48), True)
    # The Wasm filter did not run: no rows for it.
    assert run.targets(summary, ["client_header", "lua"]) == []


def test_every_cpu_ratio_of_the_targets_is_taken_round_by_round(run):
    # Rounds where the machine ran at different speeds: the per-round
    # ratios of Lua's CPU over (g)'s are 1.5, 0.8 and 5/6, median 5/6,
    # where the ratio of the two medians would read 1.0.
    cells = []
    for r, (a, g, lua, h, server) in enumerate([(30, 40, 60, 50, 20), (30, 50, 40, 60, 30),
                                                (30, 60, 50, 70, 20)]):
        ext_proc = cell("ext_proc", r, 300, h)
        ext_proc["gateway_cpu_us_per_req"] = float(h + server)
        cells += [cell("client_header", r, 1000, a), cell("dynamic_module", r, 900, g),
                  cell("lua", r, 800, lua), ext_proc]
    variants = ["client_header", "dynamic_module", "lua", "ext_proc"]
    summary = run.summarise(cells, variants, [("1k", "first")])
    rows = {t["target"]: t for t in run.targets(summary, variants)}
    assert rows["dynamic_module / lua (never slower), 1k first"]["cpu_measured"] == pytest.approx(5 / 6)
    # (h) against (a) counts its server, round by round: 30/70, 30/90, 30/90.
    assert rows["ext_proc / client header, 1k contextId first"]["cpu_measured"] == pytest.approx(1 / 3)
    # And against Lua: 60/70, 40/90, 50/90.
    assert rows["ext_proc / lua (never slower), 1k first"]["cpu_measured"] == pytest.approx(5 / 9)


def test_the_header_names_the_dynamic_modules_configuration_only_when_it_differs(run):
    meta = {"date": "d", "envoy_version": "1.40.0", "threads": 1, "connections": 16, "duration_s": 2,
            "rounds": 1, "nproc": 2, "cpu_model": "cpu", "loadavg_before": "0", "loadavg_after": "0",
            "module": "m", "module_bytes": 1, "module_sha256": "0" * 64, "git_commit": "0" * 40,
            "dynamic_module": "g.so", "dynamic_module_bytes": 2, "dynamic_module_sha256": "1" * 64,
            "filter_config": '{"a":1}', "config_g": '{"a":1}'}
    variants = ["client_header", "dynamic_module"]
    assert "(g) module: `g.so` (2 bytes, sha256 111111111111)." in run.markdown(meta, [], variants, [], None, [])
    meta["config_g"] = '{"a":2}'
    assert ("(g) module: `g.so` (2 bytes, sha256 111111111111), configuration `{\"a\":2}`."
            in run.markdown(meta, [], variants, [], None, []))


def test_the_check_takes_only_a_task_in_the_requests_context(run):
    ctx = "6f1c5b0e-2d4a-4c3b-9e8f-0a1b2c3d4e5f"
    task = ('{"jsonrpc":"2.0","id":"b7d5","result":{"kind":"task","id":"t-1","contextId":"%s",'
            '"status":{"state":"completed"}}}')
    assert run.answered_task((task % ctx).encode(), ctx)
    assert not run.answered_task((task % "another").encode(), ctx)
    assert not run.answered_task((task % ctx).replace('"kind":"task"', '"kind":"message"').encode(), ctx)
    assert not run.answered_task((task % ctx).replace('"id":"t-1",', '').encode(), ctx)
    assert not run.answered_task(b"no single well-formed x-context-id\n", ctx)
    assert not run.answered_task(b'{"result":null}', ctx)


def test_a_learning_variant_must_learn_a_task_per_request(run):
    cells = [cell("wasm", 0, 100, 10), cell("wasm_b", 0, 100, 10), cell("dynamic_module", 0, 100, 10)]
    # 500 requests each; (b) and (b') share the Wasm counter.
    learns, off = "{}", '{"learn_tasks":false}'
    assert run.learning_failures(cells, [("wasm", {"wasm": learns, "wasm_b": learns}, 1000),
                                         ("dynamic_module", {"dynamic_module": ""}, 500)]) == []
    assert run.learning_failures(cells, [("wasm", {"wasm": learns, "wasm_b": learns}, 999)]) == [
        "wasm: task_learned grew by 999, fewer than the 1000 requests"]
    # (b') not learning: only (b)'s requests count.
    assert run.learning_failures(cells, [("wasm", {"wasm": learns, "wasm_b": off}, 500)]) == []
    assert run.learning_failures(cells, [("dynamic_module", {"dynamic_module": off}, 0)]) == []
    assert run.learning_failures(cells, [("dynamic_module", {"dynamic_module": learns}, 0)]) == [
        "dynamic_module: task_learned grew by 0, fewer than the 500 requests"]


def test_a_counter_must_cover_the_requests_of_every_variant_counting_into_it(run):
    cells = [cell("wasm", 0, 100, 10), cell("wasm_b", 0, 100, 10), cell("dynamic_module", 0, 100, 10)]
    rows = [("wasm", {"wasm", "wasm_b"}, 1000), ("dynamic_module", {"dynamic_module"}, 499)]
    assert run.shortfalls(cells, "context_found", rows) == [
        "dynamic_module: context_found grew by 499, fewer than the 500 requests"]
    assert run.shortfalls(cells, "context_found", [("ext_proc", {"ext_proc"}, 0)]) == []


def test_memory_is_judged_from_when_the_task_store_is_full(run):
    def samples(evictions):
        return [{"t_s": 10.0 * i, "rss_kib": 1000 + i, "task_evicted": e} for i, e in enumerate(evictions)]

    # Full at 150 s: the steady state starts there, after the warm-up.
    steady, full_at = run.steady_samples(samples([0] * 15 + [5] * 15), 300)
    assert full_at == 150.0 and [s["t_s"] for s in steady][:2] == [150.0, 160.0]
    # Never full: the warm-up alone.
    steady, full_at = run.steady_samples(samples([0] * 30), 300)
    assert full_at is None and steady[0]["t_s"] == 30.0
    # Evictions counted before the run, and none during it: the store did not fill in this run.
    steady, full_at = run.steady_samples(samples([7] * 30), 300)
    assert full_at is None and steady[0]["t_s"] == 30.0
    # Full in the warm-up: the warm-up still ends first.
    steady, full_at = run.steady_samples(samples([0, 0, 3] + [3] * 27), 300)
    assert full_at == 20.0 and steady[0]["t_s"] == 30.0
    # Full at the very end: the last sample still gives a figure.
    steady, full_at = run.steady_samples(samples([0] * 29 + [1]), 300)
    assert full_at == 290.0 and len(steady) == 1


# bench/instructions.py: reading callgrind's dump format.

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 1000

ob=(1) /x/envoy
fl=(1) ???
fn=(1) 0x0000000000000001
0 500
cob=(2) /t/liba2a_affinity_dynamic.so
cfi=(2) filter.rs
cfn=(2) envoy_dynamic_module_on_http_filter_request_body
calls=1 0
0 500

ob=(2)
fl=(2)
fn=(2)
5 200
+1 50
cob=(1)
cfi=(1)
cfn=(3) envoy_dynamic_module_callback_http_set_header
calls=1 0
* 250

ob=(1)
fl=(1)
fn=(3)
0 250

totals: 1000
"""


@pytest.fixture(scope="module")
def instructions():
    return load_bench("instructions")


def test_a_dump_splits_into_each_objects_own_instructions_and_the_callbacks(instructions):
    parsed = instructions.parse_dump(DUMP)
    # A call's inclusive cost (the line after calls=) is not its caller's own.
    assert parsed["own"] == {"/x/envoy": 750, "/t/liba2a_affinity_dynamic.so": 250}
    assert sum(parsed["own"].values()) == instructions.summary_total(DUMP) == 1000
    assert parsed["callbacks"] == {"http_set_header": 250}
    # Envoy's call into the module's hook, with all the hook did and asked.
    assert parsed["hooks"] == {"http_filter_request_body": 500}
    assert parsed["functions"][("/t/liba2a_affinity_dynamic.so", "envoy_dynamic_module_on_http_filter_request_body")] == 250


def test_what_the_module_adds_is_its_own_code_the_callbacks_and_the_rest(instructions):
    s = instructions.split(total=230_000, base=192_000, own=23_000, envoy_callbacks=7_000)
    assert s == {"extra": 38_000, "own": 23_000, "callbacks": 7_000, "rest": 8_000}


def test_a_dump_without_a_summary_is_an_error(instructions):
    with pytest.raises(instructions.BenchError):
        instructions.summary_total("events: Ir\n0 5\n")


# The same shape with callgrind's cache and branch models on: one column per
# event, trailing zero columns left out.
SIMULATED_DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim
summary: 1000 300 100 40 20 10 2 1 1 90 9 8 3

ob=(1) /x/envoy
fl=(1) ???
fn=(1) 0x0000000000000001
0 700 200 50 30 15 5 2 1 0 60 6 8 3
cob=(2) /t/liba2a_affinity_dynamic.so
cfi=(2) filter.rs
cfn=(2) envoy_dynamic_module_on_http_filter_request_body
calls=1 0
0 300 100 50 10 5 5

ob=(2)
fl=(2)
fn=(2)
5 300 100 50 10 5 5 0 0 1 30 3

totals: 1000 300 100 40 20 10 2 1 1 90 9 8 3
"""


def test_a_simulated_dump_reads_instructions_from_their_column_and_every_event_per_object(instructions):
    parsed = instructions.parse_dump(SIMULATED_DUMP)
    # Ir is the first of thirteen columns, not the last field of the line.
    assert parsed["own"] == {"/x/envoy": 700, "/t/liba2a_affinity_dynamic.so": 300}
    assert parsed["hooks"] == {"http_filter_request_body": 300}
    assert parsed["events"][0] == "Ir" and len(parsed["events"]) == 13
    # A line that leaves out its trailing zero columns still adds up.
    assert parsed["own_events"]["/t/liba2a_affinity_dynamic.so"] == [300, 100, 50, 10, 5, 5, 0, 0, 1, 30, 3, 0, 0]
    totals = instructions.summary_events(SIMULATED_DUMP)
    assert instructions.summary_total(SIMULATED_DUMP) == totals["Ir"] == 1000
    columns = zip(*parsed["own_events"].values())
    assert [sum(c) for c in columns] == [totals[e] for e in parsed["events"]]

    parts = instructions.object_events(parsed, "liba2a_affinity_dynamic.so", count=10)
    assert parts["module"]["Ir"] == 30 and parts["module"]["I1mr"] == 1 and parts["module"]["Bcm"] == 0.3
    assert parts["envoy"]["Bim"] == 0.3 and parts["other"] == {}
    # Dr and Dw are in the dump but not among what the report shows.
    assert "Dr" not in parts["envoy"]
    # The module's functions, largest estimate first: its one function here.
    [[name, events]] = instructions.top_functions_simulated(parsed, "liba2a_affinity_dynamic.so", count=10)
    assert name == "envoy_dynamic_module_on_http_filter_request_body" and events["Ir"] == 30
    assert instructions.cycle_estimate(events) == 30 + 10 * (1 + 0.5 + 0.5 + 0.3) + 100 * 0.1


def test_the_cycle_estimate_weighs_misses_and_mispredictions(instructions):
    events = {"Ir": 1000, "I1mr": 1, "D1mr": 2, "D1mw": 3, "ILmr": 1, "DLmr": 0, "DLmw": 1,
              "Bc": 50, "Bcm": 4, "Bi": 9, "Bim": 5, "Dr": 999}
    # Ir + 10 x (6 first-level misses + 9 mispredicted) + 100 x 2 last-level misses.
    assert instructions.cycle_estimate(events) == 1000 + 150 + 200
    # One event alone (a run without --simulate) is its instructions.
    assert instructions.summary_events(DUMP) == {"Ir": 1000}
    assert instructions.cycle_estimate({"Ir": 1000}) == 1000


@pytest.mark.parametrize("cap, flags, kernel", [
    (None, {"sse2", "avx2", "avx512f", "avx512bw", "avx512vbmi", "avx512_vbmi2"}, "avx512"),
    ("avx2", {"sse2", "avx2", "avx512f", "avx512bw", "avx512vbmi", "avx512_vbmi2"}, "avx2"),
    ("SSE2", {"sse2", "avx2", "avx512f", "avx512bw", "avx512vbmi", "avx512_vbmi2"}, "sse2"),
    ("fastest", {"sse2", "avx2", "avx512f", "avx512bw", "avx512vbmi", "avx512_vbmi2"}, "avx512"),
    # AVX-512 without VBMI2 (the first AVX-512 CPUs) runs the AVX2 kernel.
    (None, {"sse2", "avx2", "avx512f", "avx512bw", "avx512vbmi"}, "avx2"),
    ("avx512", {"sse2", "avx2"}, "avx2"),
    ("avx512", {"sse2"}, "sse2"),
    (None, None, None),
])
def test_the_string_kernel_named_in_the_report_is_the_shells_choice(run, cap, flags, kernel):
    assert run.string_kernel(cap, flags) == kernel


def _rendered(run, tmp_path, template, **configs):
    config = run.filter_config()
    _, values = run.template_values(config, module=Path("m.wasm"), floor_module=Path("f.wasm"),
                                    dynamic_module=Path("d.so"), dynamic_floor_module=Path("f.so"),
                                    **configs)
    values["ext_proc_port"] = 1
    transform = run.key_beside_the_body if template == "upstream.yaml" else None
    path = run.render(BENCH.parent / "envoy/bench" / template, values, tmp_path / template,
                      transform=transform)
    return path, yaml.safe_load(path.read_text())


def _route_of(config, listener):
    (found,) = [x for x in config["static_resources"]["listeners"] if x["name"] == listener]
    hcm = found["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["hash_policy"]


def test_a_filter_state_configuration_gets_the_filter_state_route(run, tmp_path):
    fs = '{"header":"x-context-id","hash_on":"filter_state"}'
    _, front = _rendered(run, tmp_path, "envoy-bench.yaml", config_g_b=fs)
    header = [{"header": {"header_name": "x-context-id"}, "terminal": True}]
    assert _route_of(front, "dynamic_module") == header
    assert _route_of(front, "client_header") == header
    assert _route_of(front, "dynamic_module_b") == [
        {"filter_state": {"key": "envoy.hashable_string"}, "terminal": True}] + header
    both = ("dynamic_module", "dynamic_module_b")
    assert run.filter_state_variants(both, None, fs) == ("dynamic_module_b",)
    assert run.filter_state_variants(both, fs, '{"hash_on":"header"}') == ("dynamic_module",)
    # Only the variants the run has.
    assert run.filter_state_variants(("client_header", "dynamic_module"), None, fs) == ()
    assert run.wrk_mode("dynamic_module_b", True) == "body+context"
    assert run.wrk_mode("client_header", False) == "header"


def test_the_upstream_answers_a_request_without_the_header_from_the_one_beside_it(run, tmp_path):
    path, upstream = _rendered(run, tmp_path, "upstream.yaml")
    for listener in upstream["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        # The header's route, then the one for x-bench-context, then the 421.
        assert [r.get("name") for r in routes] == [None, "bench_context", None]
        assert routes[2]["direct_response"]["status"] == 421
        beside = routes[1]
        assert {"name": "x-context-id", "present_match": False} in beside["match"]["headers"]
        answer = beside["direct_response"]["body_format"]["text_format_source"]["inline_string"]
        assert '"contextId":"%REQ(x-bench-context)%"' in answer
        # Both answers name where their key came from, in values of one length.
        marks = [r["response_headers_to_add"][-1]["header"] for r in routes[:2]]
        assert [m["key"] for m in marks] == ["x-echo-context-from"] * 2
        assert [m["value"] for m in marks] == ["header", "beside"]
    # And Envoy takes it.
    envoy = run.wheel_envoy_binary()
    if envoy is None:
        pytest.skip("no Envoy in this venv")
    out = subprocess.run([str(envoy), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


class _Answer:
    """What verify reads of an upstream's answer."""

    def __init__(self, context_id, upstream):
        self.status, self.echoed, self.beside, self.upstream = 200, context_id, False, upstream
        self.body = json.dumps({"jsonrpc": "2.0", "id": "1", "result": {
            "kind": "task", "id": "t-1", "contextId": context_id}}).encode()


def test_the_check_wants_each_context_on_the_upstream_its_hash_picks(run, tmp_path, monkeypatch):
    path, front = _rendered(run, tmp_path, "envoy-bench.yaml")
    (agents,) = [c for c in front["static_resources"]["clusters"] if c["name"] == "agents"]
    ports = [str(e["endpoint"]["address"]["socket_address"]["port_value"])
             for e in agents["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    ids = run.bodies.context_ids(run.CONTEXTS_PER_CASE)
    entries = []
    for n, ctx in enumerate(ids):
        # Each body names its contextId, so the fake upstream can answer it.
        body = tmp_path / f"{n}.json"
        body.write_text(ctx)
        entries.append((ctx, body))
    cases = {("1k", "first"): entries}
    predicted = run.predicted_upstreams(path, ids)
    assert set(predicted) == set(ids) and set(predicted.values()) <= set(ports)
    listeners = {"client_header": 1, "dynamic_module": 2}

    def through(upstream_of):
        """A fake post: the answer of the upstream `upstream_of` picks."""
        def post(port, data, header=None, context=None):
            ctx = data.decode()
            return _Answer(ctx, upstream_of(port, ctx))
        return post

    monkeypatch.setattr(run, "post", through(lambda port, ctx: predicted[ctx]))
    run.verify(listeners, cases, tuple(listeners), path)

    # The body-reading variant sends each contextId to the upstream after
    # the right one, as routing with the wrong key would.
    wrong = {ctx: ports[(ports.index(p) + 1) % len(ports)] for ctx, p in predicted.items()}
    monkeypatch.setattr(run, "post", through(
        lambda port, ctx: predicted[ctx] if port == listeners["client_header"] else wrong[ctx]))
    with pytest.raises(run.BenchError) as failed:
        run.verify(listeners, cases, tuple(listeners), path)
    lines = str(failed.value).splitlines()[1:]
    # Every contextId, without and with a spoofed client header; only (g).
    assert len(lines) == 2 * len(ids)
    assert all(line.strip().startswith("dynamic_module 1k/first") and "where Envoy's hash" in line
               for line in lines)

    # Every variant sends everything to one upstream, as a route that
    # hashed nothing would: consistent across variants, and still caught.
    fixed = min(ports, key=lambda p: list(predicted.values()).count(p))
    monkeypatch.setattr(run, "post", through(lambda port, ctx: fixed))
    with pytest.raises(run.BenchError) as failed:
        run.verify(listeners, cases, tuple(listeners), path)
    elsewhere = [ctx for ctx in ids if predicted[ctx] != fixed]
    assert len(elsewhere) >= len(ids) - 2
    assert len(str(failed.value).splitlines()[1:]) == 3 * len(elsewhere)


def test_a_run_without_its_tools_says_which_are_missing_and_how_to_get_them(tmp_path):
    # A PATH with none of the tools: run.py must stop before starting
    # anything, with one line rather than a traceback.
    def bench(*args):
        return subprocess.run([sys.executable, str(BENCH / "run.py"), *args, "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, env={"PATH": str(tmp_path)}, timeout=60)

    plain = bench("--quick")
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip() == "[bench] FAILED: wrk missing: scripts/setup.sh --bench installs it"
    profiled = bench("--quick", "--profile")
    assert profiled.returncode == 1 and "Traceback" not in profiled.stderr
    assert profiled.stderr.strip() == "[bench] FAILED: wrk and perf missing: scripts/setup.sh --bench installs them"
    assert not (tmp_path / "out").exists()
