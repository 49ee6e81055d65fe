"""The demo: three agent replicas behind Envoy, with and without the filter.

Starts three replicas of demo/agent.py on loopback, then Envoy from the
shipped configuration (envoy/envoy.yaml: RING_HASH; --maglev:
envoy/envoy-maglev.yaml) with the a2a_affinity filter, and drives multi-turn
conversations through it with the a2a-sdk client (demo/drive.py). Then the
same run through the same Envoy configuration without the filter. Prints a
table per conversation and a summary of both runs. Every process it starts
is stopped at the end, also on Ctrl-C.

Without the filter the client does what the usual recipe asks of it: it
copies the contextId of the first answer into `x-context-id` on every later
request (--baseline plain: it sends no header at all, and Envoy falls back to
hashing the source address).

--gateways N (N >= 2) shows task calls through several gateways instead:
N Envoys with the filter and the same configuration in front of three
replicas, each request of a conversation sent to the next gateway, and the
last gateway replaced by a fresh Envoy (nothing learned) half way. It runs
twice: agents whose task ids carry their contextId (a2a_affinity_ids), then
agents with the SDK's plain UUID task ids, which only the gateway that saw
the task's answer can route.

--shell picks how Envoy runs the filter: the proxy-wasm module (default),
the dynamic module, or the ext_proc server in the shape kgateway renders (the
demo then starts one server beside each Envoy). The shipped Wasm
configuration is turned into the shell's, as the end-to-end tests do.

scripts/demo.sh installs what is missing, builds what the shell needs and
runs this (`.venv/bin/python -m demo.run_demo` from the repository root).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time

from pathlib import Path
from typing import Any

import yaml

from a2a_harness import (
    REPO, SHELLS, Envoy, EnvoyError, dynamic_module_path, envoy_binary, ext_proc_binary, free_port,
    release_wasm, rewrite_config, running_replicas,
)

from demo import drive


ENVOY = envoy_binary()
# Where scripts/build.sh (cargo) puts the module, CARGO_TARGET_DIR included.
MODULE = release_wasm()
TRANSPORTS = ['jsonrpc', 'jsonrpc-0.3', 'rest', 'rest-0.3']


def say(text: str) -> None:
    print(f'==> {text}', flush=True)


def envoy_config(
    source: Path,
    listen_port: int,
    admin_port: int,
    upstream_ports: list[int],
    with_filter: bool,
    module: Path = MODULE,
) -> dict[str, Any]:
    """The shipped configuration with this run's ports, and the filter kept or removed."""
    cfg = yaml.safe_load(source.read_text())
    endpoints = cfg['static_resources']['clusters'][0]['load_assignment']['endpoints'][0]['lb_endpoints']
    if len(endpoints) != len(upstream_ports):
        raise SystemExit(f'{source} has {len(endpoints)} endpoints, the demo runs {len(upstream_ports)}')
    return rewrite_config(
        cfg, listen_port=listen_port, admin_port=admin_port, upstream_ports=upstream_ports,
        module=module, with_filter=with_filter, host=None,
    )


def start_envoy(cfg: dict[str, Any], workdir: Path, name: str, binary: Path = ENVOY,
                shell: str | None = None) -> Envoy:
    """Envoy as the demo runs it: a dynamic base id, warnings only, and its own
    session, so Ctrl-C reaches only the demo, which stops it. `shell` runs
    the filter (default: $A2A_SHELL, as in the tests); a config without the
    filter runs as it is, whatever the shell."""
    return Envoy(cfg, workdir=workdir, name=name, binary=binary, base_id='dynamic',
                 log_level='warning', new_session=True, shell=shell)


def shell_artifact(shell: str, module: Path) -> Path:
    """What `shell` loads or runs: the Wasm module, the dynamic module's
    shared library, or the ext_proc server."""
    return {'wasm': module, 'dynamic-module': dynamic_module_path(),
            'ext-proc': ext_proc_binary()}[shell]


def run_conversations(
    url: str, transports: list[str], per_transport: int, context_header: str | None,
    debug_urls: list[str], followup: str = 'with-context',
) -> list[drive.Conversation]:
    results: list[drive.Conversation] = []

    def progress(conv: drive.Conversation) -> None:
        mark = 'history intact' if conv.history_intact else 'history LOST'
        print(
            f'    {conv.transport:<11} conversation {conv.number:>2}: {len(conv.turns)} turns on'
            f" {','.join(conv.replicas) or '-'}: {mark}",
            flush=True,
        )

    for transport in transports:
        batch = drive.drive_sync(
            [url],
            transport=transport,
            conversations=per_transport,
            context_header=context_header,
            debug_urls=debug_urls,
            progress=progress,
            followup=followup,
        )
        results.extend(batch)
    for i, conv in enumerate(results, 1):
        conv.number = i
    return results


def table(results: list[drive.Conversation]) -> str:
    rows = [('#', 'transport', 'turns', 'replicas seen', 'history', 'follow-up', 'get', 'cancel', 'held by (turns)')]
    for c in results:
        rows.append((
            str(c.number), c.transport, str(len(c.turns)), ','.join(c.replicas) or '-',
            'intact' if c.history_intact else 'LOST',
            drive._ratio(c.followups), drive._ratio(c.gets), drive._ratio(c.cancels),
            ' '.join(f'{k}:{v}' for k, v in sorted((c.holders or {}).items())) or '-',
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in rows)


def summary_line(label: str, results: list[drive.Conversation]) -> str:
    s = drive.summarize(results)
    used = sorted({r for c in results for r in c.replicas})
    return (
        f'{label:<24} continuity {s["history_intact"]}/{s["conversations"]}'
        f' ({s["continuity_percent"]} %)   follow-ups {drive._ratio(s["followups_ok"])}'
        f'   get {drive._ratio(s["gets_ok"])}   cancel {drive._ratio(s["cancels_ok"])}'
        f'   stream early {drive._ratio(s["streams_first_event_early"])}'
        f'   replicas used {len(used)}'
    )


def filter_counters(envoy: Envoy) -> dict[str, int]:
    """The filter's counters by short name: from Envoy's admin /stats, or
    from the ext_proc server's /metrics."""
    try:
        counters = envoy.stats()
    except OSError:
        return {}
    # The Wasm VM's own (vm_*) are not the filter's.
    return {name: value for name, value in counters.items() if not name.startswith('vm_')}


def run_gateways(a: argparse.Namespace, source: Path, module: Path, transports: list[str]) -> int:
    """--gateways N: the same conversations through N gateways, with task
    ids that carry their context and with plain UUIDs."""
    started = time.monotonic()
    runs: dict[str, list[drive.Conversation]] = {}
    counters: dict[str, dict[str, int]] = {}
    lb = 'MAGLEV' if a.maglev else 'RING_HASH'
    modes = [
        ('task ids carry context', 'context'),
        ('plain UUID task ids', 'uuid'),
    ]
    try:
        with tempfile.TemporaryDirectory(prefix='a2a-demo-') as tmp:
            workdir = Path(tmp)
            for label, task_ids in modes:
                ports = [free_port() for _ in range(a.gateways)]
                urls = [f'http://127.0.0.1:{p}' for p in ports]
                with running_replicas(3, task_ids=task_ids) as replicas:
                    upstream = [r.port for r in replicas]
                    say(f'{label}: 3 agent replicas (--task-ids {task_ids}), {a.gateways} gateways on'
                        f' {", ".join(urls)} ({lb}, {source.relative_to(REPO)}, shell {a.shell});'
                        f' each request goes to'
                        f' the next gateway; gateway {a.gateways} restarts half way')
                    envoys = []
                    totals: dict[str, int] = {}

                    def keep(envoy: Envoy) -> None:
                        for name, value in filter_counters(envoy).items():
                            totals[name] = totals.get(name, 0) + value

                    def start(i: int, name: str) -> Envoy:
                        cfg = envoy_config(source, ports[i], free_port(), upstream, True, module)
                        try:
                            return start_envoy(cfg, workdir, f'{name}-{task_ids}', a.envoy, a.shell)
                        except EnvoyError as e:
                            raise SystemExit(str(e)) from None

                    try:
                        envoys = [start(i, f'gateway-{i + 1}') for i in range(a.gateways)]
                        results = []
                        half = max(1, len(transports) // 2)
                        for n, transport in enumerate(transports):
                            if n == half:
                                last = envoys[-1]
                                keep(last)
                                last.stop()
                                envoys[-1] = start(a.gateways - 1, f'gateway-{a.gateways}-restarted')
                                say(f'gateway {a.gateways} restarted: a fresh Envoy on the same port')
                            results += drive.drive_sync(
                                urls, transport=transport, conversations=a.conversations,
                                debug_urls=[r.url for r in replicas], followup='task-only',
                                use_card_url=False, spread='request',
                            )
                    finally:
                        for envoy in envoys:
                            keep(envoy)
                            envoy.stop()
                    for i, conv in enumerate(results, 1):
                        conv.number = i
                    runs[label] = results
                    counters[label] = totals
    except KeyboardInterrupt:
        print('\ninterrupted: every process the demo started is stopped', file=sys.stderr)
        return 130

    for label, results in runs.items():
        print(f'\n{label}:')
        print(table(results))
    for label, totals in counters.items():
        print(f'\nfilter counters, all gateways ({label}):')
        for name in sorted(totals):
            print(f'  {name}: {totals[name]}')
    print()
    for label, results in runs.items():
        s = drive.summarize(results)
        calls = [x + y + z for x, y, z in zip(s['followups_ok'], s['gets_ok'], s['cancels_ok'])]
        percent = 100.0 * calls[0] / calls[1] if calls[1] else 0.0
        print(f'{summary_line(label, results)}   task calls {drive._ratio(calls)} ({percent:.1f} %)')
    print(f'({time.monotonic() - started:.1f} s)')
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description='Envoy + a2a_affinity in front of three A2A agent replicas.')
    p.add_argument('--maglev', action='store_true', help='MAGLEV (envoy/envoy-maglev.yaml) instead of RING_HASH')
    p.add_argument('--conversations', type=int, default=5, help='conversations per transport (default 5)')
    p.add_argument('--transport', action='append', choices=TRANSPORTS,
                   help='repeatable; default: all four (JSON-RPC and REST, A2A 1.0 and 0.3)')
    p.add_argument('--baseline', choices=['header', 'plain'], default='header',
                   help='client without the filter: copies the contextId into x-context-id (default), or sends nothing')
    p.add_argument('--followup', choices=['with-context', 'task-only'], default='with-context',
                   help='the input-required follow-up carries taskId and contextId, or only the taskId')
    p.add_argument('--gateways', type=int, default=1,
                   help='N >= 2: task calls through N gateways (one restarted half way), with task ids'
                        ' that carry their context and with plain UUIDs')
    p.add_argument('--listen-port', type=int, default=0, help='Envoy listener port (default: a free one)')
    p.add_argument('--shell', choices=SHELLS, default='wasm',
                   help='how Envoy runs the filter: the proxy-wasm module (default), the dynamic module,'
                        ' or the ext_proc server as kgateway renders it')
    p.add_argument('--module', type=Path, default=MODULE, help=f'the Wasm module (default {MODULE})')
    p.add_argument('--envoy', type=Path, default=ENVOY, help=f'the Envoy binary (default {ENVOY.relative_to(REPO)})')
    a = p.parse_args(argv)

    # Ctrl-C and SIGTERM both unwind through the finally blocks below.
    signal.signal(signal.SIGTERM, _interrupt)
    transports = a.transport or TRANSPORTS
    source = REPO / ('envoy/envoy-maglev.yaml' if a.maglev else 'envoy/envoy.yaml')
    module = a.module.resolve()
    artifact = shell_artifact(a.shell, module)
    if not artifact.is_file() or artifact.stat().st_size < 1024:
        raise SystemExit(f'{artifact} is missing or not built: run scripts/build.sh (scripts/demo.sh does)')
    if a.gateways > 1:
        return run_gateways(a, source, module, transports)
    listen_port = a.listen_port or free_port()
    admin_port = free_port()
    url = f'http://127.0.0.1:{listen_port}'
    started = time.monotonic()
    runs: dict[str, list[drive.Conversation]] = {}
    stats: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix='a2a-demo-') as tmp, \
                running_replicas(3, public_url=url) as replicas:
            workdir = Path(tmp)
            ports = [r.port for r in replicas]
            debug = [r.url for r in replicas]
            say(f'3 agent replicas on 127.0.0.1:{",".join(map(str, ports))}; Envoy listens on {url}'
                f' ({"MAGLEV" if a.maglev else "RING_HASH"}, {source.relative_to(REPO)}, shell {a.shell})')
            for label, with_filter, header in [
                ('with the filter', True, None),
                ('without the filter', False, 'x-context-id' if a.baseline == 'header' else None),
            ]:
                cfg = envoy_config(source, listen_port, admin_port, ports, with_filter, module)
                how = 'client sends no header' if header is None else f'client copies the contextId into {header}'
                say(f'{label}: {len(transports) * a.conversations} conversations ({how})')
                try:
                    envoy = start_envoy(cfg, workdir, 'with-filter' if with_filter else 'without-filter',
                                        a.envoy, a.shell)
                except EnvoyError as e:
                    raise SystemExit(str(e)) from None
                with envoy:
                    runs[label] = run_conversations(
                        url, transports, a.conversations, header, debug, a.followup)
                    if with_filter:
                        stats = [f'{name}: {value}' for name, value in sorted(filter_counters(envoy).items())
                                 if value]
    except KeyboardInterrupt:
        print('\ninterrupted: every process the demo started is stopped', file=sys.stderr)
        return 130

    for label, results in runs.items():
        print(f'\n{label}:')
        print(table(results))
    if stats:
        where = "the ext_proc server's /metrics" if a.shell == 'ext-proc' else 'Envoy admin /stats'
        print(f'\nfilter counters that moved ({where}, run with the filter):')
        for line in stats:
            print(f'  {line}')
    print()
    for label, results in runs.items():
        print(summary_line(label, results))
    print(f'({time.monotonic() - started:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
