"""The demo's Envoy configurations are the shipped ones with only the ports
(and, for the baseline, the filter) changed, so the demo measures what a user
of envoy/envoy.yaml gets."""

from __future__ import annotations

import copy

import pytest
import yaml

from a2a_harness import REPO, WASM_FILTER, dynamic_module_path, ext_proc_binary

from demo import run_demo


SHIPPED = ['envoy/envoy.yaml', 'envoy/envoy-maglev.yaml']


def filter_names(cfg):
    hcm = cfg['static_resources']['listeners'][0]['filter_chains'][0]['filters'][0]['typed_config']
    return [f['name'] for f in hcm['http_filters']]


def without_ports(cfg):
    """The configuration with every port and the module path blanked."""
    cfg = copy.deepcopy(cfg)
    cfg['admin']['address']['socket_address']['port_value'] = 0
    cfg['static_resources']['listeners'][0]['address']['socket_address']['port_value'] = 0
    for ep in cfg['static_resources']['clusters'][0]['load_assignment']['endpoints'][0]['lb_endpoints']:
        ep['endpoint']['address']['socket_address']['port_value'] = 0
    hcm = cfg['static_resources']['listeners'][0]['filter_chains'][0]['filters'][0]['typed_config']
    for f in hcm['http_filters']:
        if f['name'] == WASM_FILTER:
            f['typed_config']['config']['vm_config']['code']['local']['filename'] = ''
    return cfg


@pytest.mark.parametrize('shipped', SHIPPED)
def test_demo_config_changes_only_ports_and_filter(shipped):
    source = REPO / shipped
    original = yaml.safe_load(source.read_text())
    with_filter = run_demo.envoy_config(source, 20000, 20001, [20011, 20012, 20013], True)
    baseline = run_demo.envoy_config(source, 20000, 20001, [20011, 20012, 20013], False)

    assert without_ports(with_filter) == without_ports(original)
    assert WASM_FILTER in filter_names(with_filter)
    assert WASM_FILTER not in filter_names(baseline)
    assert filter_names(baseline) == [n for n in filter_names(original) if n != WASM_FILTER]
    cluster = baseline['static_resources']['clusters'][0]
    assert cluster['lb_policy'] == original['static_resources']['clusters'][0]['lb_policy']
    ports = [
        ep['endpoint']['address']['socket_address']['port_value']
        for ep in cluster['load_assignment']['endpoints'][0]['lb_endpoints']
    ]
    assert ports == [20011, 20012, 20013]
    listener = with_filter['static_resources']['listeners'][0]
    assert listener['address']['socket_address']['port_value'] == 20000
    hcm = listener['filter_chains'][0]['filters'][0]['typed_config']
    wasm = next(f for f in hcm['http_filters'] if f['name'] == WASM_FILTER)
    assert wasm['typed_config']['config']['vm_config']['code']['local']['filename'] == str(run_demo.MODULE)


@pytest.mark.parametrize('shell', [None, 'wasm', 'dynamic-module', 'ext-proc'])
def test_the_demo_runs_envoy_in_the_shell_it_is_given(monkeypatch, tmp_path, shell):
    # --shell reaches the launcher, which turns the Wasm config into that
    # shell's; without one (the tests' calls), the launcher's default,
    # $A2A_SHELL, holds.
    seen = {}

    class Recorder:
        def __init__(self, cfg, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(run_demo, 'Envoy', Recorder)
    run_demo.start_envoy({}, tmp_path, 'demo', shell=shell)
    assert seen['shell'] == shell


def test_each_shell_needs_its_own_artifact():
    module = REPO / 'some.wasm'
    assert run_demo.shell_artifact('wasm', module) == module
    assert run_demo.shell_artifact('dynamic-module', module) == dynamic_module_path()
    assert run_demo.shell_artifact('ext-proc', module) == ext_proc_binary()
