"""Shared by the end-to-end tests (tests/e2e, tests/agent), the demo (demo/)
and the benchmark (bench/run.py): repository and artifact paths, free
ports, one Envoy launcher with the config helpers around it, where Envoy's
consistent hashing puts a key (crates/envoy-lb), and the demo agent
replicas."""

from .envoy import (WASM_FILTER, Envoy, EnvoyError, h2_upstream, http_filters, load_config,
                    plugin_settings, render_config, rewrite_config, wasm_plugin)
from .lb import envoy_lb_route, predict_hosts
from .paths import (DEFAULT_TARGET_DIR, DYNAMIC_MODULE_VERSIONS, ENVOY_BINARIES, REPO, envoy_binary,
                    envoy_executable, module_path, release_wasm, target_dir, wheel_envoy_binary)
from .procs import free_port, log_tail, pause_process, stop_process, wait_until
from .replicas import AgentReplica, running_replicas
from .shells import (DYNAMIC_FILTER, FILTER_OF_SHELL, SHELLS, ExtProcServer, affinity_filter,
                     current_shell, dynamic_module_path, edit_settings, ext_proc_binary, hcm,
                     plugin_of, settings_field, to_shell)

__all__ = [
    "DEFAULT_TARGET_DIR", "DYNAMIC_MODULE_VERSIONS", "ENVOY_BINARIES", "REPO", "WASM_FILTER",
    "AgentReplica", "Envoy", "EnvoyError", "envoy_binary", "envoy_executable", "envoy_lb_route", "free_port",
    "h2_upstream", "http_filters", "load_config", "log_tail", "module_path", "pause_process",
    "plugin_settings", "predict_hosts", "release_wasm", "render_config", "rewrite_config",
    "running_replicas", "stop_process", "target_dir", "wait_until", "wasm_plugin",
    "wheel_envoy_binary", "DYNAMIC_FILTER", "FILTER_OF_SHELL", "SHELLS", "ExtProcServer",
    "affinity_filter", "current_shell", "dynamic_module_path", "edit_settings", "ext_proc_binary",
    "hcm", "plugin_of", "settings_field", "to_shell",
]
