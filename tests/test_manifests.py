"""Offline checks of the Kubernetes manifests under deploy/.

Every YAML document is validated against the real CRD schema of its kind
(deploy/schemas/, the schemas of the upstream CustomResourceDefinitions of
Envoy Gateway, Istio, kgateway and the Gateway API, extracted by
scripts/vendor-crds.py), made strict under `spec` the way
`kubectl --validate=strict` is, so a misspelled field fails. Core kinds get
structural checks. Then the points the affinity depends on are asserted: every
hash policy hashes x-context-id, every Wasm filter configuration allows
pausing in the headers callback and fails open, the filter's JSON
configuration uses only the fields of its contract, and the names that tie the
objects together (Envoy Gateway's generated filter and listener names, route
targets, backends) agree.

Run: .venv/bin/python -m pytest -q tests/test_manifests.py
"""

from __future__ import annotations

import copy
import functools
import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import jsonschema
import pytest
import yaml
from a2a_harness import DYNAMIC_MODULE_VERSIONS, envoy_binary, envoy_executable, free_port, predict_hosts

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SCHEMA_DIR = DEPLOY / "schemas"
SCHEMA_MANIFEST = SCHEMA_DIR / "sources.json"

HASH_HEADER = "x-context-id"
ROOT_ID = "a2a_affinity"
WASM_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE_TYPE = "type.googleapis.com/google.protobuf.StringValue"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
# Envoy's listener default; Istio and kgateway leave it unchanged.
ENVOY_DEFAULT_BUFFER_LIMIT = 1024 * 1024
# Envoy Gateway sets every listener to this unless told otherwise.
ENVOY_GATEWAY_BUFFER_LIMIT = 32 * 1024
# And its listeners' HTTP/2 windows (internal/xds/translator/listener.go):
# a stream's window is also its buffer limit in Envoy.
ENVOY_GATEWAY_H2_STREAM_WINDOW = 64 * 1024
ENVOY_GATEWAY_H2_CONNECTION_WINDOW = 1024 * 1024
ENVOY_GATEWAY_H2_MAX_STREAMS = 100

# The filter's plugin configuration (the filter contract): field -> check.
FILTER_CONFIG_FIELDS: dict[str, Callable[[Any], bool]] = {
    "header": lambda v: isinstance(v, str) and re.fullmatch(r"[a-z0-9][a-z0-9-]*", v) is not None,
    "max_value_bytes": lambda v: type(v) is int and v > 0,
    "max_scan_bytes": lambda v: type(v) is int and v > 0,
    "client_header": lambda v: v in ("keep", "strip"),
    "mint_context_id": lambda v: type(v) is bool,
    "learn_tasks": lambda v: type(v) is bool,
    "task_id_context": lambda v: type(v) is bool,
    "task_capacity": lambda v: type(v) is int and v > 0,
    "task_ttl_secs": lambda v: type(v) is int and v > 0,
    "decide_at": lambda v: v in ("body_end", "first_id"),
    # The gateways' consistent-hash settings name a header: "filter_state"
    # (the dynamic module's option for a route hash policy written by hand)
    # would leave them nothing to hash.
    "hash_on": lambda v: v == "header",
}
FILTER_DEFAULT_MAX_SCAN_BYTES = 262144

CORE_KINDS = {("", "v1", "Namespace"), ("", "v1", "Service"), ("", "v1", "ConfigMap"), ("apps", "v1", "Deployment")}

# libyaml's loader is several times faster than the pure-Python one.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --------------------------------------------------------------------------
# Loading


class Doc:
    """One YAML document of a file under deploy/."""

    def __init__(self, path: Path, index: int, body: dict[str, Any]):
        self.path = path
        self.index = index
        self.body = body

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}#{self.index}"

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def group(self) -> str:
        api = str(self.body.get("apiVersion", ""))
        return api.rsplit("/", 1)[0] if "/" in api else ""

    @property
    def version(self) -> str:
        return str(self.body.get("apiVersion", "")).rsplit("/", 1)[-1]

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.body.get("metadata", {}).get("namespace", ""))

    @property
    def gateway_dir(self) -> str:
        return self.path.relative_to(DEPLOY).parts[0]

    @property
    def spec(self) -> dict[str, Any]:
        return self.body.get("spec") or {}


def load_docs() -> list[Doc]:
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
    docs = []
    for path in files:
        with path.open(encoding="utf-8") as f:
            for index, body in enumerate(yaml.load_all(f, Loader=YAML_LOADER)):
                if body is None:
                    continue
                assert isinstance(body, dict), f"{path}#{index}: not a mapping"
                docs.append(Doc(path, index, body))
    return docs


def schema_manifest() -> list[dict[str, Any]]:
    """The entries of deploy/schemas/sources.json, one per extracted CRD."""
    if not SCHEMA_MANIFEST.is_file():
        pytest.fail(
            f"{SCHEMA_MANIFEST.relative_to(REPO)} is missing: the manifests cannot be checked against "
            "the CRD schemas (see deploy/schemas/README.md; scripts/vendor-crds.py writes them)."
        )
    return json.loads(SCHEMA_MANIFEST.read_text(encoding="utf-8"))["files"]


@functools.lru_cache(maxsize=1)
def load_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(group, kind) -> extracted CRD (name, group, kind, names, scope and the
    schema of each served version). Gateway API ships a standard and an
    experimental CRD per kind; the standard one (a subset) is the stricter
    check."""
    found: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
    for entry in schema_manifest():
        raw = (SCHEMA_DIR / entry["file"]).read_bytes()
        if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
            pytest.fail(f"deploy/schemas/{entry['file']} differs from its sha256 in sources.json")
        crd = json.loads(raw)
        key = (crd["group"], crd["kind"])
        if key in found and found[key][0].get("channel") == "standard":
            continue
        found[key] = (entry, crd)
    return {key: crd for key, (_, crd) in found.items()}


@pytest.fixture(scope="module")
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    crds = load_crds()
    if not crds:
        pytest.fail(f"no CRD schema listed in {SCHEMA_MANIFEST.relative_to(REPO)}")
    return crds


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    docs = load_docs()
    assert docs, f"no YAML documents under {DEPLOY}"
    return docs


def find(docs: list[Doc], kind: str, gateway_dir: str | None = None) -> list[Doc]:
    return [d for d in docs if d.kind == kind and (gateway_dir is None or d.gateway_dir == gateway_dir)]


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for child in value.values():
            yield from walk(child)
    elif isinstance(value, list):
        for child in value:
            yield from walk(child)


# --------------------------------------------------------------------------
# Schema validation


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Forbid unknown fields on every object that lists its properties and
    does not declare extra ones allowed (what --validate=strict does)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if "properties" in out:
        out["properties"] = {k: strict(v) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [strict(s) for s in out[key]]
    return out


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any] | None:
    # deploy/schemas/ holds the served versions only.
    for v in crd["versions"]:
        if v["name"] == version:
            schema = copy.deepcopy(v["openAPIV3Schema"])
            if "spec" in schema.get("properties", {}):
                schema["properties"]["spec"] = strict(schema["properties"]["spec"])
            return schema
    return None


def schema_errors(doc: Doc, crds: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    crd = crds.get((doc.group, doc.kind))
    if crd is None:
        return [f"{doc.where}: no CRD for {doc.group}/{doc.kind}"]
    schema = crd_schema(crd, doc.version)
    if schema is None:
        return [f"{doc.where}: CRD {crd['name']} serves no version {doc.version}"]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{doc.where} ({doc.kind} {doc.name}): {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(doc.body)
    ]


def core_errors(doc: Doc, docs: list[Doc]) -> list[str]:
    """Structural checks for the built-in kinds the project ships."""
    errs: list[str] = []
    body, spec = doc.body, doc.spec
    if not doc.name:
        errs.append(f"{doc.where}: metadata.name missing")
    if doc.kind == "Namespace":
        if doc.namespace:
            errs.append(f"{doc.where}: a Namespace is not namespaced")
        return errs
    if not doc.namespace:
        errs.append(f"{doc.where}: metadata.namespace missing")
    if doc.kind == "ConfigMap":
        known = {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}
        errs += [f"{doc.where}: unknown ConfigMap field {k}" for k in set(body) - known]
        data = body.get("data") or {}
        if not isinstance(data, dict) or not data:
            errs.append(f"{doc.where}: data must be a non-empty mapping")
            data = {}
        for key, value in data.items():
            if not re.fullmatch(r"[-._a-zA-Z0-9]+", str(key)):
                errs.append(f"{doc.where}: bad data key {key!r}")
            if not isinstance(value, str):
                errs.append(f"{doc.where}: data[{key!r}] must be a string")
        return errs
    if doc.kind == "Deployment":
        known = {"replicas", "selector", "template", "strategy", "minReadySeconds",
                 "revisionHistoryLimit", "progressDeadlineSeconds", "paused"}
        errs += [f"{doc.where}: unknown Deployment spec field {k}" for k in set(spec) - known]
        if type(spec.get("replicas")) is not int or spec["replicas"] < 1:
            errs.append(f"{doc.where}: spec.replicas must be a positive integer")
        selector = spec.get("selector", {}).get("matchLabels") or {}
        labels = spec.get("template", {}).get("metadata", {}).get("labels") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            errs.append(f"{doc.where}: selector.matchLabels must be non-empty and match the pod labels")
        containers = spec.get("template", {}).get("spec", {}).get("containers") or []
        if not containers:
            errs.append(f"{doc.where}: no containers")
        known_c = {"name", "image", "imagePullPolicy", "ports", "env", "envFrom", "args", "command",
                   "readinessProbe", "livenessProbe", "startupProbe", "resources", "volumeMounts",
                   "securityContext", "lifecycle", "workingDir"}
        for c in containers:
            errs += [f"{doc.where}: unknown container field {k}" for k in set(c) - known_c]
            if not c.get("name") or not c.get("image"):
                errs.append(f"{doc.where}: container needs name and image")
            for p in c.get("ports", []):
                if type(p.get("containerPort")) is not int or not 0 < p["containerPort"] < 65536:
                    errs.append(f"{doc.where}: bad containerPort {p}")
                if p.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                    errs.append(f"{doc.where}: bad port protocol {p}")
    elif doc.kind == "Service":
        known = {"selector", "ports", "type", "clusterIP", "sessionAffinity", "publishNotReadyAddresses",
                 "internalTrafficPolicy", "ipFamilyPolicy", "trafficDistribution"}
        errs += [f"{doc.where}: unknown Service spec field {k}" for k in set(spec) - known]
        ports = spec.get("ports") or []
        if not ports:
            errs.append(f"{doc.where}: no ports")
        selector = spec.get("selector") or {}
        backing = [
            d for d in docs
            if d.kind == "Deployment" and d.namespace == doc.namespace
            and all((d.spec.get("template", {}).get("metadata", {}).get("labels") or {}).get(k) == v
                    for k, v in selector.items())
        ]
        if not selector or not backing:
            errs.append(f"{doc.where}: selector {selector} selects no Deployment under deploy/")
        container_ports = {
            p.get("name"): p.get("containerPort")
            for d in backing
            for c in d.spec["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for p in ports:
            if type(p.get("port")) is not int or not 0 < p["port"] < 65536:
                errs.append(f"{doc.where}: bad port {p}")
            target = p.get("targetPort", p.get("port"))
            if isinstance(target, str) and target not in container_ports:
                errs.append(f"{doc.where}: targetPort {target!r} is no named container port")
    return errs


def test_schema_directory_matches_its_manifest() -> None:
    listed = {entry["file"] for entry in schema_manifest()}
    present = {p.relative_to(SCHEMA_DIR).as_posix() for p in SCHEMA_DIR.rglob("*.json")} - {SCHEMA_MANIFEST.name}
    assert listed == present, (
        f"sources.json and deploy/schemas/ disagree: unlisted {sorted(present - listed)}, "
        f"missing {sorted(listed - present)}"
    )
    assert all(e["source_sha256"] and e["upstream_path"] and e["release"] for e in schema_manifest())
    assert load_crds(), "deploy/schemas/ holds no CRD schema"


def document_errors(doc: Doc, docs: list[Doc], crds: dict) -> list[str]:
    if (doc.group, doc.version, doc.kind) in CORE_KINDS:
        return core_errors(doc, docs)
    if (doc.group, doc.kind) in crds:
        return schema_errors(doc, crds)
    return [f"{doc.where}: kind {doc.body.get('apiVersion')} {doc.kind} has no CRD "
            "schema under deploy/schemas/ and no structural check here"]


def test_every_document_is_validated(docs: list[Doc], crds: dict) -> None:
    errors = [e for doc in docs for e in document_errors(doc, docs, crds)]
    assert not errors, "\n".join(errors)


def test_names_are_unique_and_namespaces_exist(docs: list[Doc]) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    namespaces = {d.name for d in find(docs, "Namespace")}
    cluster_scoped = {"Namespace", "GatewayClass"}
    for d in docs:
        key = (d.kind, d.namespace, d.name)
        assert key not in seen, f"{d.where} duplicates {seen[key]}"
        seen[key] = d.where
        if d.kind not in cluster_scoped:
            assert d.namespace in namespaces, f"{d.where}: namespace {d.namespace!r} is not created under deploy/"


# --------------------------------------------------------------------------
# References between objects


def resolve(docs: list[Doc], kind: str, name: str, namespace: str) -> Doc | None:
    for d in docs:
        if d.kind == kind and d.name == name and d.namespace == namespace:
            return d
    return None


def target_refs(policy: Doc) -> list[dict[str, Any]]:
    """A policy's targets: its `targetRefs`, then its `targetRef`."""
    return list(policy.spec.get("targetRefs") or []) + ([policy.spec["targetRef"]] if policy.spec.get("targetRef") else [])


def reference_errors(docs: list[Doc]) -> list[str]:
    errs: list[str] = []
    for d in docs:
        for ref in target_refs(d):
            target = resolve(docs, ref["kind"], ref["name"], d.namespace)
            if target is None:
                errs.append(f"{d.where}: target {ref['kind']} {ref['name']} is not in deploy/")
                continue
            section = ref.get("sectionName")
            if section and ref["kind"] == "HTTPRoute":
                if section not in [r.get("name") for r in target.spec.get("rules", [])]:
                    errs.append(f"{d.where}: HTTPRoute {ref['name']} has no rule {section}")
        if d.kind == "HTTPRoute":
            for parent in d.spec.get("parentRefs", []):
                gw = resolve(docs, "Gateway", parent["name"], parent.get("namespace", d.namespace))
                if gw is None or gw.gateway_dir != d.gateway_dir:
                    errs.append(f"{d.where}: parent Gateway {parent['name']} is not in deploy/{d.gateway_dir}")
            for rule in d.spec.get("rules", []):
                for backend in rule.get("backendRefs", []):
                    svc = resolve(docs, "Service", backend["name"], backend.get("namespace", d.namespace))
                    ports = [p["port"] for p in svc.spec.get("ports", [])] if svc else []
                    if svc is None or backend.get("port") not in ports:
                        errs.append(f"{d.where}: backend {backend['name']}:{backend.get('port')} is no Service port")
        if d.kind == "Gateway":
            classes = {c.name for c in find(docs, "GatewayClass")}
            class_name = d.spec.get("gatewayClassName")
            # Istio and kgateway create their GatewayClass at install time.
            if class_name not in classes | {"istio", "kgateway"}:
                errs.append(f"{d.where}: GatewayClass {class_name} is neither shipped nor built in")
            # Envoy Gateway: an EnvoyProxy; Istio: a ConfigMap; both in the
            # Gateway's namespace.
            params = (d.spec.get("infrastructure") or {}).get("parametersRef")
            if params and resolve(docs, params.get("kind", ""), params.get("name", ""), d.namespace) is None:
                errs.append(f"{d.where}: infrastructure.parametersRef {params.get('kind')} {params.get('name')} "
                            "is not in deploy/")
        if d.kind == "DestinationRule":
            host = d.spec.get("host", "")
            svc_name, _, rest = host.partition(".")
            ns = rest.split(".")[0] if rest else d.namespace
            if resolve(docs, "Service", svc_name, ns) is None:
                errs.append(f"{d.where}: host {host} is no Service under deploy/")
    return errs


def test_references_resolve(docs: list[Doc]) -> None:
    errors = reference_errors(docs)
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------
# Hash policies


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def hash_policy_errors(docs: list[Doc]) -> list[str]:
    """Every consistent-hash policy must hash exactly x-context-id."""
    errs: list[str] = []
    found = {"envoy-gateway": 0, "istio": 0, "kgateway": 0}

    def header_is(where: str, name: Any) -> None:
        if name != HASH_HEADER:
            errs.append(f"{where}: hashes {name!r}, not {HASH_HEADER!r}")

    for d in find(docs, "BackendTrafficPolicy"):
        lb = d.spec.get("loadBalancer")
        if not lb:
            continue
        if lb.get("type") != "ConsistentHash":
            errs.append(f"{d.where}: loadBalancer.type is {lb.get('type')}, not ConsistentHash")
            continue
        ch = lb.get("consistentHash") or {}
        if ch.get("type") == "Headers":
            names = [h.get("name") for h in ch.get("headers") or []]
        elif ch.get("type") == "Header":
            names = [(ch.get("header") or {}).get("name")]
        else:
            errs.append(f"{d.where}: consistentHash.type {ch.get('type')} does not hash a header")
            continue
        if len(names) != 1:
            errs.append(f"{d.where}: hashes {names}, want only {HASH_HEADER}")
        for name in names:
            header_is(d.where, name)
        if "tableSize" in ch and not is_prime(ch["tableSize"]):
            errs.append(f"{d.where}: Maglev tableSize {ch['tableSize']} is not prime")
        found[d.gateway_dir] = found.get(d.gateway_dir, 0) + 1

    for d in find(docs, "DestinationRule"):
        lb = (d.spec.get("trafficPolicy") or {}).get("loadBalancer") or {}
        ch = lb.get("consistentHash")
        if ch is None:
            errs.append(f"{d.where}: no consistentHash")
            continue
        if {"httpCookie", "useSourceIp", "httpQueryParameterName"} & set(ch):
            errs.append(f"{d.where}: consistentHash hashes something besides the header")
        header_is(d.where, ch.get("httpHeaderName"))
        if not ("maglev" in ch) ^ ("ringHash" in ch):
            errs.append(f"{d.where}: set exactly one of maglev and ringHash")
        table = (ch.get("maglev") or {}).get("tableSize")
        if table is not None and not is_prime(table):
            errs.append(f"{d.where}: Maglev tableSize {table} is not prime")
        found[d.gateway_dir] = found.get(d.gateway_dir, 0) + 1

    for d in find(docs, "BackendConfigPolicy"):
        lb = d.spec.get("loadBalancer") or {}
        # The CRD's CEL rules, which jsonschema does not run.
        algorithms = [a for a in ("leastRequest", "roundRobin", "ringHash", "maglev", "random") if a in lb]
        if len(algorithms) != 1:
            errs.append(f"{d.where}: exactly one load balancer algorithm must be set, got {algorithms}")
            continue
        if algorithms[0] not in ("ringHash", "maglev"):
            errs.append(f"{d.where}: {algorithms[0]} is not a consistent hash")
            continue
        policies = lb[algorithms[0]].get("hashPolicies") or []
        if not policies:
            errs.append(f"{d.where}: no hashPolicies")
        for p in policies:
            kinds = [k for k in ("header", "cookie", "sourceIP") if k in p]
            if kinds != ["header"]:
                errs.append(f"{d.where}: hash policy {p} must hash the header only")
                continue
            header_is(d.where, p["header"].get("name"))
            if p.get("terminal") is not True:
                errs.append(f"{d.where}: the header hash policy should be terminal")
        found[d.gateway_dir] = found.get(d.gateway_dir, 0) + 1

    for gateway_dir, count in found.items():
        if count == 0:
            errs.append(f"deploy/{gateway_dir}: no consistent-hash policy")
    return errs


def test_every_hash_policy_hashes_the_context_header(docs: list[Doc]) -> None:
    errors = hash_policy_errors(docs)
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------
# The Wasm filter's configuration


def filter_config_errors(where: str, config: Any) -> list[str]:
    if not isinstance(config, dict):
        return [f"{where}: plugin configuration is not a JSON object"]
    errs = [f"{where}: unknown filter field {k!r}" for k in config if k not in FILTER_CONFIG_FIELDS]
    errs += [
        f"{where}: bad value {config[k]!r} for {k}"
        for k, ok in FILTER_CONFIG_FIELDS.items()
        if k in config and not ok(config[k])
    ]
    if config.get("header", HASH_HEADER) != HASH_HEADER:
        errs.append(f"{where}: the filter sets {config['header']!r} but the gateways hash {HASH_HEADER!r}")
    return errs


def eg_filter_name(policy: Doc, index: int) -> str:
    # Envoy Gateway v1.9: wasmFilterName() -> perRouteFilterName(EnvoyFilterWasm,
    # irConfigNameForWasm(policy, idx)) = "envoy.filters.http.wasm/" +
    # "<lowercased kind>/<namespace>/<name>/wasm/<idx>".
    return f"envoy.filters.http.wasm/envoyextensionpolicy/{policy.namespace}/{policy.name}/wasm/{index}"


def eg_listener_names(gateway: Doc) -> set[str]:
    # Default xDS name scheme: <namespace>/<gateway>/<listener>; with the
    # XDSNameSchemeV2 runtime flag: tcp-<port>.
    names = set()
    for listener in gateway.spec.get("listeners", []):
        names.add(f"{gateway.namespace}/{gateway.name}/{listener['name']}")
        names.add(f"tcp-{listener['port']}")
    return names


JSONPATH_BY_NAME = re.compile(r"^\.\.http_filters\[\?\(@\.name\s*==\s*'([^']+)'\)\]\.typed_config\.config$")


def envoy_gateway_errors(docs: list[Doc]) -> list[str]:
    """EnvoyExtensionPolicy Wasm entries and the EnvoyPatchPolicy that must
    set allow_on_headers_stop_iteration on the filter Envoy Gateway generates."""
    errs: list[str] = []
    patches = find(docs, "EnvoyPatchPolicy")
    wasm_policies = [d for d in find(docs, "EnvoyExtensionPolicy") if d.spec.get("wasm")]
    if not wasm_policies:
        errs.append("no EnvoyExtensionPolicy loads the Wasm filter")
    for policy in wasm_policies:
        for index, wasm in enumerate(policy.spec["wasm"]):
            where = f"{policy.where} wasm[{index}]"
            if wasm.get("rootID") != ROOT_ID:
                errs.append(f"{where}: rootID must be {ROOT_ID}")
            if wasm.get("failOpen") is not True:
                errs.append(f"{where}: failOpen must be true")
            errs += filter_config_errors(where, wasm.get("config", {}))
            code = wasm.get("code", {})
            source = code.get(str(code.get("type", "")).lower()) or {}
            if not re.fullmatch(r"[0-9a-f]{64}", str(source.get("sha256", ""))):
                errs.append(f"{where}: code needs a sha256 (64 hex digits)")

            filter_name = eg_filter_name(policy, index)
            gateways = [
                g for g in find(docs, "Gateway", policy.gateway_dir) if g.namespace == policy.namespace
            ]
            flag_set = False
            buffer_limit = ENVOY_GATEWAY_BUFFER_LIMIT
            for patch in patches:
                target = patch.spec.get("targetRef", {})
                gateway = next((g for g in gateways if g.name == target.get("name")), None)
                if target.get("kind") != "Gateway" or gateway is None or patch.namespace != gateway.namespace:
                    continue
                for jp in patch.spec.get("jsonPatches", []):
                    op = jp.get("operation", {})
                    if jp.get("type") != LISTENER_TYPE or jp.get("name") not in eg_listener_names(gateway):
                        errs.append(f"{patch.where}: patch names listener {jp.get('name')!r}, which "
                                    f"{gateway.name} does not generate")
                        continue
                    if op.get("path") == "/per_connection_buffer_limit_bytes" and op.get("op") in ("add", "replace"):
                        buffer_limit = op.get("value")
                    m = JSONPATH_BY_NAME.match(str(op.get("jsonPath", "")))
                    if m and op.get("path") == "/allow_on_headers_stop_iteration":
                        if m.group(1) != filter_name:
                            errs.append(f"{patch.where}: patches filter {m.group(1)!r}, but Envoy Gateway "
                                        f"names it {filter_name!r}")
                        elif op.get("op") in ("add", "replace") and op.get("value") is True:
                            flag_set = True
            if not flag_set:
                errs.append(f"{where}: no EnvoyPatchPolicy sets allow_on_headers_stop_iteration: true "
                            f"on {filter_name}")
            scan = wasm.get("config", {}).get("max_scan_bytes", FILTER_DEFAULT_MAX_SCAN_BYTES)
            if not isinstance(buffer_limit, int) or scan >= buffer_limit:
                errs.append(f"{where}: max_scan_bytes {scan} is not below the listener buffer limit "
                            f"{buffer_limit}: Envoy would answer 413 before the filter gives up")
    return errs


def test_filter_fields_are_the_cores_and_the_readmes() -> None:
    """The fields checked here are those the core reads (crates/core/src/config.rs,
    FIELDS) and the README's configuration table lists, in the same order: a field
    added to the filter cannot be missing from the manifest checks or the docs."""
    source = (REPO / "crates/core/src/config.rs").read_text()
    core = re.search(r"const FIELDS: \[&str; \d+\] = \[(.*?)\];", source, re.S)
    assert core, "FIELDS not found in crates/core/src/config.rs"
    core_fields = re.findall(r'"([a-z_]+)"', core.group(1))
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Configuration\n"):readme.index("## Stats\n")]
    readme_fields = re.findall(r"^\| `([a-z_]+)` \|", table, re.M)
    assert list(FILTER_CONFIG_FIELDS) == core_fields == readme_fields


def test_envoy_gateway_wasm_is_patched_and_fails_open(docs: list[Doc]) -> None:
    errors = envoy_gateway_errors(docs)
    assert not errors, "\n".join(errors)


def wasm_typed_configs(doc: Doc) -> list[dict[str, Any]]:
    return [v for v in walk(doc.body) if isinstance(v, dict) and v.get("@type") == WASM_FILTER_TYPE]


def envoy_wasm_config_errors(where: str, typed_config: dict[str, Any]) -> list[str]:
    """A raw Envoy Wasm filter config (as in an EnvoyFilter)."""
    errs: list[str] = []
    config = typed_config.get("config") or {}
    if config.get("allow_on_headers_stop_iteration") is not True:
        errs.append(f"{where}: allow_on_headers_stop_iteration must be true")
    if not (config.get("fail_open") is True or config.get("failure_policy") == "FAIL_OPEN"):
        errs.append(f"{where}: must fail open (failure_policy: FAIL_OPEN or fail_open: true)")
    if config.get("root_id") != ROOT_ID:
        errs.append(f"{where}: root_id must be {ROOT_ID}")
    vm = config.get("vm_config") or {}
    if vm.get("runtime") != "envoy.wasm.runtime.v8":
        errs.append(f"{where}: runtime must be envoy.wasm.runtime.v8 (the only Wasm runtime in release Envoy)")
    remote = (vm.get("code") or {}).get("remote")
    if remote is not None and not re.fullmatch(r"[0-9a-f]{64}", str(remote.get("sha256", ""))):
        errs.append(f"{where}: remote code needs a sha256 (64 hex digits)")
    configuration = config.get("configuration") or {}
    if configuration.get("@type") != STRING_VALUE_TYPE:
        errs.append(f"{where}: configuration must be a google.protobuf.StringValue")
    else:
        try:
            plugin = json.loads(configuration.get("value", ""))
        except json.JSONDecodeError as e:
            errs.append(f"{where}: plugin configuration is not JSON: {e}")
        else:
            errs += filter_config_errors(where, plugin)
            scan = plugin.get("max_scan_bytes", FILTER_DEFAULT_MAX_SCAN_BYTES)
            if isinstance(scan, int) and scan >= ENVOY_DEFAULT_BUFFER_LIMIT:
                errs.append(f"{where}: max_scan_bytes {scan} is not below Envoy's 1 MiB buffer limit")
    return errs


def istio_errors(docs: list[Doc]) -> list[str]:
    errs: list[str] = []
    # The dynamic-module EnvoyFilter has its own checks (istio_dynamic_module_errors).
    filters = [d for d in find(docs, "EnvoyFilter") if not dynamic_module_typed_configs(d)]
    if not filters:
        errs.append("no EnvoyFilter loads the Wasm filter")
    for d in filters:
        configs = wasm_typed_configs(d)
        if not configs:
            errs.append(f"{d.where}: no Wasm filter configuration")
        for c in configs:
            errs += envoy_wasm_config_errors(d.where, c)
        patches = d.spec.get("configPatches", [])
        extension_names = {
            p["patch"]["value"].get("name")
            for p in patches
            if p.get("applyTo") == "EXTENSION_CONFIG" and p["patch"].get("operation") == "ADD"
        }
        inserted = [
            p for p in patches
            if p.get("applyTo") == "HTTP_FILTER" and p["patch"].get("operation") == "INSERT_BEFORE"
            and p.get("match", {}).get("listener", {}).get("filterChain", {}).get("filter", {})
            .get("subFilter", {}).get("name") == "envoy.filters.http.router"
        ]
        if not inserted:
            errs.append(f"{d.where}: the filter must be inserted before envoy.filters.http.router")
        for p in inserted:
            value = p["patch"]["value"]
            if "config_discovery" in value:
                if value.get("name") not in extension_names:
                    errs.append(f"{d.where}: HTTP filter {value.get('name')!r} points at no EXTENSION_CONFIG")
                if WASM_FILTER_TYPE not in value["config_discovery"].get("type_urls", []):
                    errs.append(f"{d.where}: config_discovery must accept the Wasm type")
            elif (value.get("typed_config") or {}).get("@type") != WASM_FILTER_TYPE:
                errs.append(f"{d.where}: inserted filter is not the Wasm filter")
        for p in patches:
            context = p.get("match", {}).get("context")
            if context in ("SIDECAR_INBOUND", None, "ANY"):
                errs.append(f"{d.where}: context {context}: the hash is chosen by the proxy that "
                            "sends to the agents (GATEWAY, SIDECAR_OUTBOUND or WAYPOINT)")
    # WasmPlugin has no allow_on_headers_stop_iteration and cannot be patched.
    errs += [f"{d.where}: a WasmPlugin cannot set allow_on_headers_stop_iteration" for d in find(docs, "WasmPlugin")]
    return errs


def test_istio_envoyfilter_allows_pause_and_fails_open(docs: list[Doc]) -> None:
    errors = istio_errors(docs)
    assert not errors, "\n".join(errors)


def test_every_wasm_configuration_in_deploy_is_checked(docs: list[Doc]) -> None:
    # A Wasm config dropped anywhere else (another EnvoyFilter, a ConfigMap)
    # must meet the same rules.
    errors = []
    for d in docs:
        for c in wasm_typed_configs(d):
            errors += envoy_wasm_config_errors(d.where, c)
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------
# kgateway's transformation stand-in


def kgateway_errors(docs: list[Doc]) -> list[str]:
    errs: list[str] = []
    policies = [d for d in find(docs, "TrafficPolicy", "kgateway") if d.spec.get("transformation")]
    if not policies:
        errs.append("deploy/kgateway: no TrafficPolicy transformation sets the header")
    for d in policies:
        request = d.spec["transformation"].get("request") or {}
        if (request.get("body") or {}).get("parseAs") != "AsJson":
            errs.append(f"{d.where}: body.parseAs must be AsJson to read the contextId")
        if (request.get("body") or {}).get("value"):
            errs.append(f"{d.where}: the body must pass through unchanged")
        sets = [s for s in request.get("set") or [] if s.get("name") == HASH_HEADER]
        if len(sets) != 1 or request.get("add"):
            errs.append(f"{d.where}: must set (replace, not add) {HASH_HEADER} exactly once")
        for s in sets:
            template = s.get("value", "")
            for path in ("params.message.contextId", "message.contextId"):
                if path not in template:
                    errs.append(f"{d.where}: template does not read {path}")
            if f'header("{HASH_HEADER}")' not in template:
                errs.append(f"{d.where}: template must fall back to the client's header (an empty value removes it)")
            if template.count("{%") != template.count("%}") or template.count("{{") != template.count("}}"):
                errs.append(f"{d.where}: unbalanced template delimiters")
        # A body that is empty or not JSON gets 400 from the transformation:
        # it must only see JSON POSTs.
        for ref in d.spec.get("targetRefs", []):
            route = resolve(docs, ref["kind"], ref["name"], d.namespace)
            rule = next((r for r in (route.spec.get("rules", []) if route else [])
                         if r.get("name") == ref.get("sectionName")), None)
            matches = (rule or {}).get("matches") or []
            json_only = bool(matches) and all(
                m.get("method") == "POST"
                and any(h.get("name", "").lower() == "content-type" and "json" in h.get("value", "")
                        for h in m.get("headers", []))
                for m in matches
            )
            if not json_only:
                errs.append(f"{d.where}: must target a route rule that matches only JSON POSTs")
    return errs


def test_kgateway_transformation_sets_the_header(docs: list[Doc]) -> None:
    errors = kgateway_errors(docs)
    assert not errors, "\n".join(errors)


def test_content_type_rule_matches_a2a_media_types(docs: list[Doc]) -> None:
    # The kgateway rule's regex as Envoy applies it (whole value, RE2; this
    # pattern uses only syntax Python's re shares).
    patterns = [
        h["value"]
        for route in find(docs, "HTTPRoute", "kgateway")
        for rule in route.spec.get("rules", [])
        for m in rule.get("matches") or []
        for h in m.get("headers") or []
        if h.get("name", "").lower() == "content-type" and h.get("type") == "RegularExpression"
    ]
    assert patterns, "deploy/kgateway: no content-type rule"
    for pattern in patterns:
        regex = re.compile(pattern)
        for ok in ("application/json", "application/a2a+json", "application/json; charset=utf-8",
                   "Application/JSON", "application/vnd.example+json;v=1"):
            assert regex.fullmatch(ok), f"{pattern!r} misses {ok!r}"
        for bad in ("text/plain", "application/jsonp", "multipart/form-data", "application/json-seq"):
            assert not regex.fullmatch(bad), f"{pattern!r} matches {bad!r}"


# --------------------------------------------------------------------------
# kgateway's ext_proc path: the a2a-affinity-ext-proc server as a
# GatewayExtension, enabled on the agents' route by a TrafficPolicy.

# The modes the server is built for. The request headers wait for the reply
# to the one (BUFFERED_PARTIAL) body message, which sets the header; the
# response is streamed to it for task learning.
EXT_PROC_MODES = {
    "requestHeaderMode": "SEND",
    "requestBodyMode": "BUFFERED_PARTIAL",
    "requestTrailerMode": "SKIP",
    "responseHeaderMode": "SEND",
    "responseBodyMode": "STREAMED",
    "responseTrailerMode": "SKIP",
}
# With "learn_tasks": false the server reads no response.
EXT_PROC_MODES_NO_LEARNING = {**EXT_PROC_MODES, "responseHeaderMode": "SKIP", "responseBodyMode": "NONE"}
# Why each other request body mode is wrong here.
WRONG_REQUEST_BODY_MODES = {
    "BUFFERED": "Envoy answers 413 to a body over the buffer limit",
    "FULL_DUPLEX_STREAMED": "it fails closed, has no message timeout, and with trailers skipped "
                            "loses the body of HTTP/2 requests with trailers",
    "STREAMED": "the headers leave before the body is read",
    "NONE": "the body is never read",
}
# Service appProtocols kgateway sends HTTP/2 to (gRPC needs it).
H2_APP_PROTOCOLS = {"kubernetes.io/h2c", "grpc", "http2"}
EXT_PROC_IMAGE = "a2a-affinity-ext-proc"
KGATEWAY_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")


def kgateway_duration_secs(value: Any) -> float | None:
    """A kgateway CRD duration ("500ms", "1m30s") in seconds, or None."""
    if not isinstance(value, str) or not KGATEWAY_DURATION.fullmatch(value):
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(int(n) * scale[unit] for n, unit in re.findall(r"([0-9]+)(ms|h|m|s)", value))


def cli_flags(args: list[Any]) -> dict[str, str]:
    """`--flag value` and `--flag=value` pairs of a container's args."""
    out: dict[str, str] = {}
    args = [str(a) for a in args]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            if "=" in arg:
                key, value = arg.split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                key, value = arg, args[i + 1]
                i += 1
            else:
                key, value = arg, ""
            out[key] = value
        i += 1
    return out


def listen_port(value: str | None) -> int | None:
    m = re.fullmatch(r".+:([0-9]{1,5})", value or "")
    return int(m.group(1)) if m else None


def selected_deployments(docs: list[Doc], service: Doc) -> list[Doc]:
    selector = service.spec.get("selector") or {}
    return [
        d for d in find(docs, "Deployment") if d.namespace == service.namespace and selector
        and all((d.spec["template"]["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
    ]


def service_by_host(docs: list[Doc], host: str, namespace: str) -> Doc | None:
    """A Service named by a DNS name: name, name.ns, name.ns.svc[.cluster.local]."""
    parts = host.split(".")
    ns = parts[1] if len(parts) > 1 else namespace
    return resolve(docs, "Service", parts[0], ns)


def mounted_file(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str] | None:
    """(ConfigMap name, key) a path in the container comes from."""
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        root = str(mount.get("mountPath", "")).rstrip("/") + "/"
        source = (volumes.get(mount.get("name")) or {}).get("configMap")
        if source is None or not path.startswith(root):
            continue
        relative = mount.get("subPath") or path[len(root):]
        for item in source.get("items") or []:
            if item.get("path") == relative:
                return source.get("name"), item.get("key")
        return source.get("name"), relative
    return None


def ext_proc_server_errors(docs: list[Doc], where: str, service: Doc, port: dict[str, Any]
                           ) -> tuple[list[str], dict[str, Any] | None]:
    """The Deployment behind the GatewayExtension's backend: flags, probes,
    security, and its --config file, which must be the filter's JSON
    configuration. Returns the errors and that configuration."""
    errs: list[str] = []
    config: dict[str, Any] | None = None
    deployments = selected_deployments(docs, service)
    if len(deployments) != 1:
        return [f"{where}: Service {service.name} selects {len(deployments)} Deployments, want 1"], None
    deployment = deployments[0]
    w = deployment.where
    pod = deployment.spec["template"]["spec"]
    target = port.get("targetPort", port.get("port"))
    containers = [c for c in pod.get("containers", [])
                  if any(p.get("containerPort") == target or p.get("name") == target for p in c.get("ports", []))]
    if len(containers) != 1:
        return [f"{w}: no single container serves targetPort {target!r}"], None
    c = containers[0]
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    grpc_port = ports.get(target, target)
    if EXT_PROC_IMAGE not in str(c.get("image", "")):
        errs.append(f"{w}: container image {c.get('image')!r} is not {EXT_PROC_IMAGE}")
    flags = cli_flags(c.get("args") or [])
    if listen_port(flags.get("--listen")) != grpc_port:
        errs.append(f"{w}: --listen {flags.get('--listen')!r} is not the Service's port {grpc_port}")
    metrics_port = listen_port(flags.get("--metrics-listen"))
    if metrics_port is None or metrics_port == grpc_port:
        errs.append(f"{w}: --metrics-listen must be an ADDR:PORT of its own")

    def probe_port(value: Any) -> Any:
        return ports.get(value, value)

    readiness = c.get("readinessProbe") or {}
    if probe_port((readiness.get("grpc") or {}).get("port")) != grpc_port:
        errs.append(f"{w}: readinessProbe must be the gRPC health check on port {grpc_port}")
    liveness = (c.get("livenessProbe") or {}).get("httpGet") or {}
    if liveness.get("path") != "/healthz" or probe_port(liveness.get("port")) != metrics_port:
        errs.append(f"{w}: livenessProbe must be GET /healthz on the metrics port {metrics_port}")
    if not (c.get("resources") or {}).get("requests"):
        errs.append(f"{w}: no resource requests")
    security = c.get("securityContext") or {}
    if not (security.get("runAsNonRoot") or (pod.get("securityContext") or {}).get("runAsNonRoot")):
        errs.append(f"{w}: must run as non-root (runAsNonRoot)")
    if security.get("readOnlyRootFilesystem") is not True or security.get("allowPrivilegeEscalation") is not False:
        errs.append(f"{w}: needs readOnlyRootFilesystem: true and allowPrivilegeEscalation: false")

    store = flags.get("--task-store", "memory")
    if store == "memory":
        if deployment.spec.get("replicas", 1) > 1:
            errs.append(f"{w}: {deployment.spec['replicas']} replicas with --task-store memory: a task learned "
                        "on one is unknown to the others; use Redis")
    else:
        m = re.fullmatch(r"redis://([a-z0-9.-]+):([0-9]{1,5})", store)
        redis = service_by_host(docs, m.group(1), deployment.namespace) if m else None
        if redis is None or int(m.group(2)) not in [p.get("port") for p in redis.spec.get("ports", [])]:
            errs.append(f"{w}: --task-store {store!r} is neither memory nor redis://<a Service here>:<its port>")

    path = flags.get("--config")
    source = mounted_file(pod, c, path) if path else None
    config_map = resolve(docs, "ConfigMap", source[0], deployment.namespace) if source else None
    raw = (config_map.body.get("data") or {}).get(source[1]) if config_map and source else None
    if raw is None:
        errs.append(f"{w}: --config {path!r} is not a key of a ConfigMap under deploy/ mounted there")
    else:
        try:
            config = json.loads(raw)
        except json.JSONDecodeError as e:
            errs.append(f"{config_map.where}: {source[1]} is not JSON: {e}")
        else:
            errs += filter_config_errors(f"{config_map.where} {source[1]}", config)
            if not isinstance(config, dict):
                config = None
    return errs, config


def expected_ext_proc_modes(config: dict[str, Any] | None) -> dict[str, str]:
    return EXT_PROC_MODES if (config or {}).get("learn_tasks", True) else EXT_PROC_MODES_NO_LEARNING


def mode_errors(where: str, modes: Any, expected: dict[str, str]) -> list[str]:
    if not isinstance(modes, dict):
        return [f"{where}: processingMode missing"]
    errs = []
    body = modes.get("requestBodyMode")
    if body in WRONG_REQUEST_BODY_MODES:
        errs.append(f"{where}: requestBodyMode {body}: {WRONG_REQUEST_BODY_MODES[body]}; "
                    "BUFFERED_PARTIAL holds the headers for the body reply without a 413")
    for field, value in expected.items():
        if modes.get(field) != value:
            errs.append(f"{where}: processingMode.{field} is {modes.get(field)!r}, want {value!r}"
                        + ("" if field in modes else " (a field left out falls back to the CRD default)"))
    errs += [f"{where}: unknown processingMode field {k}" for k in set(modes) - set(expected)]
    return errs


def kgateway_ext_proc_errors(docs: list[Doc]) -> list[str]:
    errs: list[str] = []
    extensions = [d for d in find(docs, "GatewayExtension", "kgateway") if d.spec.get("extProc")]
    policies = [d for d in find(docs, "TrafficPolicy", "kgateway") if (d.spec.get("extProc") or {}).get("extensionRef")]
    if not extensions or not policies:
        return ["deploy/kgateway: no GatewayExtension extProc with a TrafficPolicy enabling it"]
    configs: dict[str, dict[str, Any] | None] = {}
    for ext in extensions:
        spec = ext.spec["extProc"]
        if ext.spec.get("type", "ExtProc") != "ExtProc":
            errs.append(f"{ext.where}: type must be ExtProc")
        if spec.get("failOpen") is not True:
            errs.append(f"{ext.where}: failOpen must be true (a dead or slow server must not fail requests)")
        timeout = kgateway_duration_secs(spec.get("messageTimeout"))
        if timeout is None or not 0.1 <= timeout <= 2.0:
            errs.append(f"{ext.where}: messageTimeout {spec.get('messageTimeout')!r}: set it, between 100ms "
                        "and 2s (each message to a stalled server delays the request this long)")
        if spec.get("allowProcessingModeOverride"):
            errs.append(f"{ext.where}: allowProcessingModeOverride must stay false")
        ref = (spec.get("grpcService") or {}).get("backendRef") or {}
        if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
            errs.append(f"{ext.where}: backendRef must be a Service")
            continue
        service = resolve(docs, "Service", ref.get("name", ""), ref.get("namespace", ext.namespace))
        port = next((p for p in (service.spec.get("ports") or [] if service else []) if p.get("port") == ref.get("port")), None)
        if service is None or port is None:
            errs.append(f"{ext.where}: backendRef {ref.get('name')}:{ref.get('port')} is no Service port under deploy/")
            continue
        if port.get("appProtocol") not in H2_APP_PROTOCOLS:
            errs.append(f"{service.where}: port {port.get('port')} needs appProtocol kubernetes.io/h2c (or grpc): "
                        "kgateway speaks HTTP/1.1 to it otherwise and every gRPC call fails")
        server_errs, config = ext_proc_server_errors(docs, ext.where, service, port)
        errs += server_errs
        configs[ext.name] = config
        if "processingMode" in spec:
            errs += mode_errors(ext.where, spec["processingMode"], expected_ext_proc_modes(config))

    backend_policies = find(docs, "BackendConfigPolicy", "kgateway")
    for d in policies:
        ref = d.spec["extProc"]["extensionRef"]
        ext = resolve(docs, "GatewayExtension", ref.get("name", ""), ref.get("namespace", d.namespace))
        if ext is None or not ext.spec.get("extProc"):
            errs.append(f"{d.where}: extensionRef {ref.get('name')} is no extProc GatewayExtension under deploy/")
            continue
        errs += mode_errors(d.where, d.spec["extProc"].get("processingMode"), expected_ext_proc_modes(configs.get(ext.name)))
        # The header the server sets must be what the route's backends hash.
        for target in d.spec.get("targetRefs") or []:
            route = resolve(docs, target.get("kind", ""), target.get("name", ""), d.namespace)
            if route is None or route.kind != "HTTPRoute":
                errs.append(f"{d.where}: target {target.get('name')} is no HTTPRoute under deploy/")
                continue
            for rule in route.spec.get("rules") or []:
                for backend in rule.get("backendRefs") or []:
                    hashed = any(
                        ref2.get("kind") == "Service" and ref2.get("name") == backend.get("name")
                        and any(a in (p.spec.get("loadBalancer") or {}) for a in ("ringHash", "maglev"))
                        for p in backend_policies for ref2 in p.spec.get("targetRefs") or []
                    )
                    if not hashed:
                        errs.append(f"{d.where}: backend {backend.get('name')} of {route.name} has no "
                                    "BackendConfigPolicy with ringHash/maglev on the header")

    # The ext_proc path and the transformation fallback must not be applied
    # together by one `kubectl apply -f <dir>`.
    transformation_dirs = {d.path.parent for d in find(docs, "TrafficPolicy", "kgateway") if d.spec.get("transformation")}
    for d in policies:
        if d.path.parent in transformation_dirs:
            errs.append(f"{d.where}: in the same directory as the transformation fallback; keep them apart")
    return errs


def test_kgateway_ext_proc_is_wired_and_fails_open(docs: list[Doc]) -> None:
    errors = kgateway_ext_proc_errors(docs)
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------
# The checks must catch what they are for: broken copies are rejected.


def mutated(docs: list[Doc], kind: str, change: Callable[[dict[str, Any]], None],
            name: str | None = None) -> list[Doc]:
    out = []
    hit = False
    for d in docs:
        body = copy.deepcopy(d.body)
        if d.kind == kind and not hit and name in (None, d.name):
            change(body)
            hit = True
        out.append(Doc(d.path, d.index, body))
    assert hit, f"no {kind} to break"
    return out


def test_schema_check_rejects_a_misspelled_field(docs: list[Doc], crds: dict) -> None:
    def misspell(body: dict[str, Any]) -> None:
        body["spec"]["loadBalancer"]["consistentHsh"] = body["spec"]["loadBalancer"].pop("consistentHash")

    broken = mutated(docs, "BackendTrafficPolicy", misspell)
    doc = next(d for d in broken if d.kind == "BackendTrafficPolicy")
    errors = schema_errors(doc, crds)
    assert any("consistentHsh" in e for e in errors), errors


def test_schema_check_rejects_a_bad_enum_and_type(docs: list[Doc], crds: dict) -> None:
    def break_it(body: dict[str, Any]) -> None:
        body["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"]["maglev"]["tableSize"] = "65537"
        body["spec"]["trafficPolicy"]["loadBalancer"]["simple"] = "ROUND_ROBBIN"

    doc = next(d for d in mutated(docs, "DestinationRule", break_it) if d.kind == "DestinationRule")
    errors = schema_errors(doc, crds)
    assert any("tableSize" in e for e in errors) and any("ROUND_ROBBIN" in e for e in errors), errors


def test_unknown_kind_and_broken_core_kind_are_rejected(docs: list[Doc], crds: dict) -> None:
    pdb = Doc(DEPLOY / "common" / "agent.yaml", 99, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                                                    "metadata": {"name": "x", "namespace": "agents"}})
    assert any("no CRD" in e for e in document_errors(pdb, docs, crds))

    def break_deployment(body: dict[str, Any]) -> None:
        body["spec"]["replicas"] = "3"
        body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}

    broken = mutated(docs, "Deployment", break_deployment)
    errors = [e for d in broken for e in document_errors(d, broken, crds)]
    assert any("replicas" in e for e in errors), errors
    assert any("matchLabels" in e for e in errors), errors
    assert any("selects no Deployment" in e for e in errors), errors


def test_hash_check_rejects_another_header(docs: list[Doc]) -> None:
    def other_header(body: dict[str, Any]) -> None:
        body["spec"]["loadBalancer"]["maglev"]["hashPolicies"][0]["header"]["name"] = "x-session-id"

    errors = hash_policy_errors(mutated(docs, "BackendConfigPolicy", other_header))
    assert any("x-session-id" in e for e in errors), errors


def test_envoy_gateway_check_rejects_a_missing_or_misnamed_patch(docs: list[Doc]) -> None:
    def flag_false(body: dict[str, Any]) -> None:
        for jp in body["spec"]["jsonPatches"]:
            if jp["operation"].get("path") == "/allow_on_headers_stop_iteration":
                jp["operation"]["value"] = False

    errors = envoy_gateway_errors(mutated(docs, "EnvoyPatchPolicy", flag_false))
    assert any("allow_on_headers_stop_iteration" in e for e in errors), errors

    def renamed(body: dict[str, Any]) -> None:
        body["metadata"]["name"] = "a2a-affinity-v2"

    errors = envoy_gateway_errors(mutated(docs, "EnvoyExtensionPolicy", renamed, name="a2a-affinity"))
    assert any("names it" in e for e in errors), errors

    def small_buffer(body: dict[str, Any]) -> None:
        body["spec"]["jsonPatches"] = [
            jp for jp in body["spec"]["jsonPatches"]
            if jp["operation"].get("path") != "/per_connection_buffer_limit_bytes"
        ]

    errors = envoy_gateway_errors(mutated(docs, "EnvoyPatchPolicy", small_buffer))
    assert any("413" in e for e in errors), errors


def test_filter_config_check_rejects_unknown_fields_and_closed_failure(docs: list[Doc]) -> None:
    def bad_config(body: dict[str, Any]) -> None:
        wasm = body["spec"]["wasm"][0]
        wasm["config"]["headerName"] = "x-context-id"
        wasm["failOpen"] = False

    errors = envoy_gateway_errors(mutated(docs, "EnvoyExtensionPolicy", bad_config, name="a2a-affinity"))
    assert any("headerName" in e for e in errors) and any("failOpen" in e for e in errors), errors

    def istio_flag_off(body: dict[str, Any]) -> None:
        for v in walk(body):
            if isinstance(v, dict) and v.get("@type") == WASM_FILTER_TYPE:
                v["config"].pop("allow_on_headers_stop_iteration")
                v["config"]["configuration"]["value"] = '{"header": "x-context-id", "max_scan_bytes": "big"}'

    errors = istio_errors(mutated(docs, "EnvoyFilter", istio_flag_off, name="a2a-affinity"))
    assert any("allow_on_headers_stop_iteration" in e for e in errors), errors
    assert any("max_scan_bytes" in e for e in errors), errors


def test_reference_check_rejects_a_dangling_target(docs: list[Doc]) -> None:
    def dangling(body: dict[str, Any]) -> None:
        body["spec"]["targetRefs"][0]["sectionName"] = "no-such-rule"

    errors = reference_errors(mutated(docs, "TrafficPolicy", dangling))
    assert any("no-such-rule" in e for e in errors), errors


def test_kgateway_ext_proc_check_rejects_wrong_modes_and_closed_failure(docs: list[Doc]) -> None:
    def modes(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        return lambda body: change(body["spec"]["extProc"]["processingMode"])

    cases: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
        ("TrafficPolicy", modes(lambda m: m.update(requestBodyMode="BUFFERED")), "413"),
        ("TrafficPolicy", modes(lambda m: m.update(requestBodyMode="FULL_DUPLEX_STREAMED")), "fails closed"),
        ("TrafficPolicy", modes(lambda m: m.pop("responseBodyMode")), "falls back to the CRD default"),
        ("GatewayExtension", modes(lambda m: m.update(requestBodyMode="STREAMED")), "before the body"),
        ("GatewayExtension", lambda b: b["spec"]["extProc"].update(failOpen=False), "failOpen"),
        ("GatewayExtension", lambda b: b["spec"]["extProc"].pop("messageTimeout"), "messageTimeout"),
        ("GatewayExtension", lambda b: b["spec"]["extProc"]["grpcService"]["backendRef"].update(port=9090),
         "appProtocol"),
    ]
    for kind, change, expected in cases:
        errors = kgateway_ext_proc_errors(mutated(docs, kind, change))
        assert any(expected in e for e in errors), (kind, expected, errors)


def test_kgateway_ext_proc_check_rejects_a_broken_server(docs: list[Doc]) -> None:
    name = "a2a-affinity-ext-proc"

    def container(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        return lambda body: change(body["spec"]["template"]["spec"]["containers"][0])

    def set_flag(flag: str, value: str) -> Callable[[dict[str, Any]], None]:
        def change(c: dict[str, Any]) -> None:
            c["args"][c["args"].index(flag) + 1] = value
        return container(change)

    def config(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        def edit(body: dict[str, Any]) -> None:
            key = next(iter(body["data"]))
            value = json.loads(body["data"][key])
            change(value)
            body["data"][key] = json.dumps(value)
        return edit

    cases: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
        ("Deployment", set_flag("--task-store", "memory"), "unknown to the others"),
        ("Deployment", set_flag("--task-store", "redis://nowhere:6379"), "--task-store"),
        ("Deployment", set_flag("--listen", "0.0.0.0:50051"), "--listen"),
        ("Deployment", set_flag("--config", "/etc/elsewhere/config.json"), "--config"),
        ("Deployment", container(lambda c: c.pop("readinessProbe")), "gRPC health"),
        ("Deployment", container(lambda c: c["securityContext"].update(readOnlyRootFilesystem=False)),
         "readOnlyRootFilesystem"),
        ("ConfigMap", config(lambda v: v.update(headerName="x-context-id")), "unknown filter field"),
        ("ConfigMap", config(lambda v: v.update(max_scan_bytes="big")), "max_scan_bytes"),
        # Without task learning the response modes must change too.
        ("ConfigMap", config(lambda v: v.update(learn_tasks=False)), "responseBodyMode"),
        ("Service", lambda b: [p.pop("appProtocol", None) for p in b["spec"]["ports"]], "appProtocol"),
    ]
    for kind, change, expected in cases:
        errors = kgateway_ext_proc_errors(mutated(docs, kind, change, name=name))
        assert any(expected in e for e in errors), (kind, expected, errors)


def test_kgateway_ext_proc_check_rejects_the_fallback_beside_it(docs: list[Doc]) -> None:
    policy = next(d for d in find(docs, "TrafficPolicy", "kgateway") if d.spec.get("extProc"))
    moved = [Doc(policy.path, 99, copy.deepcopy(d.body)) if d.spec.get("transformation") else d for d in docs]
    errors = kgateway_ext_proc_errors(moved)
    assert any("transformation fallback" in e for e in errors), errors


# --------------------------------------------------------------------------
# The shipped Wasm configurations, as each gateway hands them to Envoy, must
# load in a real Envoy with the real module (`envoy --mode validate` creates
# the VM and runs the filter's on_configure, which rejects unknown fields).

# Envoy Gateway v1.9 ships Envoy 1.39; the oldest Envoy with
# allow_on_headers_stop_iteration that the project tests is 1.36.
ENVOYS = {
    "1.40": REPO / ".venv" / "bin" / "envoy",
    "1.36.4": REPO / ".venv-envoy-1.36.4" / "bin" / "envoy",
}


def wasm_module() -> Path | None:
    """The module scripts/build.sh produced (it honours CARGO_TARGET_DIR)."""
    dirs = [Path(os.environ["CARGO_TARGET_DIR"])] if os.environ.get("CARGO_TARGET_DIR") else []
    dirs.append(REPO / "target")
    for d in dirs:
        module = d / "wasm32-wasip1" / "release" / "a2a_affinity.wasm"
        if module.is_file():
            return module
    return None


def local_code(module: Path) -> dict[str, Any]:
    return {"local": {"filename": str(module)}}


def bootstrap(http_filter: dict[str, Any], route: dict[str, Any], cluster_lb: dict[str, Any],
              buffer_limit: int | None, http2: dict[str, Any] | None = None) -> dict[str, Any]:
    listener: dict[str, Any] = {
        "name": "gateway",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "gateway",
                "route_config": {"virtual_hosts": [{"name": "agents", "domains": ["*"], "routes": [route]}]},
                "http_filters": [http_filter, {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }],
            },
        }]}],
    }
    if buffer_limit is not None:
        listener["per_connection_buffer_limit_bytes"] = buffer_limit
    if http2 is not None:
        listener["filter_chains"][0]["filters"][0]["typed_config"]["http2_protocol_options"] = http2
    cluster = {
        "name": "agents", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "agents", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
            for port in (8081, 8082, 8083)
        ]}]},
        **cluster_lb,
    }
    return {"static_resources": {"listeners": [listener], "clusters": [cluster]}}


def envoy_gateway_bootstrap(docs: list[Doc], module: Path) -> dict[str, Any]:
    """What Envoy Gateway v1.9 generates (internal/xds/translator/wasm.go):
    the filter disabled on the HCM and enabled on the route, its
    configuration the `config` object as a JSON string; then the
    EnvoyPatchPolicy's operations applied to it."""
    policy = next(d for d in find(docs, "EnvoyExtensionPolicy") if d.spec.get("wasm"))
    wasm = policy.spec["wasm"][0]
    name = eg_filter_name(policy, 0)
    http_filter = {
        "name": name,
        "disabled": True,
        "typed_config": {"@type": WASM_FILTER_TYPE, "config": {
            "name": wasm.get("name", name),
            "root_id": wasm.get("rootID", ""),
            "fail_open": wasm.get("failOpen", False),
            "configuration": {"@type": STRING_VALUE_TYPE,
                              "value": json.dumps(wasm.get("config", {}), separators=(",", ":"))},
            "vm_config": {"vm_id": name.split("/", 1)[1], "runtime": "envoy.wasm.runtime.v8",
                          "code": local_code(module)},
        }},
    }
    buffer_limit = ENVOY_GATEWAY_BUFFER_LIMIT
    for patch in find(docs, "EnvoyPatchPolicy"):
        for jp in patch.spec.get("jsonPatches", []):
            op = jp["operation"]
            m = JSONPATH_BY_NAME.match(str(op.get("jsonPath", "")))
            if m and m.group(1) == http_filter["name"] and op["op"] in ("add", "replace"):
                http_filter["typed_config"]["config"][op["path"].lstrip("/")] = op["value"]
            elif op.get("path") == "/per_connection_buffer_limit_bytes" and op["op"] in ("add", "replace"):
                buffer_limit = op["value"]
    btp = next(d for d in find(docs, "BackendTrafficPolicy") if d.spec.get("loadBalancer"))
    ch = btp.spec["loadBalancer"]["consistentHash"]
    route = {
        "match": {"prefix": "/"},
        "route": {"cluster": "agents", "timeout": "0s",
                  "hash_policy": [{"header": {"header_name": h["name"]}} for h in ch["headers"]]},
        "typed_per_filter_config": {name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                                           "config": {}}},
    }
    lb = {"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": ch.get("tableSize", 65537)}}
    return bootstrap(http_filter, route, lb, buffer_limit)


def istio_bootstrap(docs: list[Doc], module: Path) -> dict[str, Any]:
    """The EnvoyFilter's ECDS resource inlined where its HTTP filter points,
    with the module istio-agent would have downloaded; the DestinationRule's
    hash policy and Maglev table."""
    envoy_filter = wasm_envoy_filter(docs)
    extension = next(p["patch"]["value"] for p in envoy_filter.spec["configPatches"]
                     if p["applyTo"] == "EXTENSION_CONFIG")
    typed_config = copy.deepcopy(extension["typed_config"])
    typed_config["config"]["vm_config"]["code"] = local_code(module)
    http_filter = {"name": extension["name"], "typed_config": typed_config}
    route, lb = istio_route_and_lb(docs)
    return bootstrap(http_filter, route, lb, None)


def wasm_envoy_filter(docs: list[Doc]) -> Doc:
    return next(d for d in find(docs, "EnvoyFilter") if wasm_typed_configs(d))


def istio_route_and_lb(docs: list[Doc]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The route hash policy and cluster load balancer Istio makes of the
    DestinationRule."""
    ch = find(docs, "DestinationRule")[0].spec["trafficPolicy"]["loadBalancer"]["consistentHash"]
    route = {"match": {"prefix": "/"},
             "route": {"cluster": "agents", "hash_policy": [{"header": {"header_name": ch["httpHeaderName"]}}]}}
    if "maglev" in ch:
        lb = {"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": ch["maglev"].get("tableSize", 65537)}}
    else:
        lb = {"lb_policy": "RING_HASH",
              "ring_hash_lb_config": {"minimum_ring_size": ch["ringHash"].get("minimumRingSize", 1024)}}
    return route, lb


BOOTSTRAPS = {"envoy-gateway": envoy_gateway_bootstrap, "istio": istio_bootstrap}


def envoy_validate(envoy: Path, config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
        capture_output=True, text=True, timeout=120, check=False,
    )


def needs_envoy_and_module(version: str) -> tuple[Path, Path]:
    envoy = ENVOYS[version]
    if not envoy.is_file():
        pytest.skip(f"Envoy {version} is not installed at {envoy} (scripts/setup.sh installs it)")
    module = wasm_module()
    if module is None:
        pytest.skip("the Wasm module is not built: run scripts/build.sh")
    # scripts/test.sh builds right before the tests; a module older than the
    # filter's sources is a leftover, not the filter these manifests ship.
    sources = [REPO / "Cargo.toml", REPO / "Cargo.lock", *sorted((REPO / "src").rglob("*.rs")),
               *sorted((REPO / "crates" / "core" / "src").rglob("*.rs"))]
    newest = max((s.stat().st_mtime for s in sources if s.is_file()), default=0.0)
    if module.stat().st_mtime < newest:
        pytest.skip(f"{module} is older than the filter's sources: run scripts/build.sh")
    return envoy, module


@pytest.mark.parametrize("version", sorted(ENVOYS))
@pytest.mark.parametrize("gateway", sorted(BOOTSTRAPS))
def test_wasm_configuration_loads_in_envoy(docs: list[Doc], gateway: str, version: str, tmp_path: Path) -> None:
    envoy, module = needs_envoy_and_module(version)
    config = BOOTSTRAPS[gateway](docs, module)
    wasm = next(v for v in walk(config) if isinstance(v, dict) and v.get("@type") == WASM_FILTER_TYPE)
    assert wasm["config"].get("allow_on_headers_stop_iteration") is True, wasm
    result = envoy_validate(envoy, config, tmp_path)
    assert result.returncode == 0, (
        f"Envoy {version} rejects the {gateway} Wasm config with module {module} "
        f"({module.stat().st_size} bytes):\n{result.stdout}{result.stderr}"
    )


def test_envoy_validation_rejects_an_unknown_filter_field(docs: list[Doc], tmp_path: Path) -> None:
    envoy, module = needs_envoy_and_module("1.40")

    def unknown_field(body: dict[str, Any]) -> None:
        body["spec"]["wasm"][0]["config"]["headerName"] = "x-context-id"

    config = envoy_gateway_bootstrap(mutated(docs, "EnvoyExtensionPolicy", unknown_field, name="a2a-affinity"), module)
    result = envoy_validate(envoy, config, tmp_path)
    assert result.returncode != 0, "Envoy accepted a filter configuration with an unknown field"


# --------------------------------------------------------------------------
# The Envoy configuration kgateway renders from the ext_proc manifests
# (kgateway v2.4, pkg/kgateway/extensions2/plugins/trafficpolicy/:
# gateway_extension.go buildCompositeExtProcFilter, extproc_policy.go,
# traffic_policy_plugin.go HttpFilters), modelled here: it must load in Envoy
# and be what envoy/envoy-ext-proc-kgateway.yaml ships.

EXT_PROC_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
EXT_PROC_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
# The cluster name the shipped Envoy configs (and the test harness) use
# where kgateway has kube_<namespace>_<service>_<port>.
SHIPPED_EXT_PROC_CLUSTER = "a2a_affinity_ext_proc"
ENVOY_EXT_PROC = REPO / "envoy" / "envoy-ext-proc.yaml"
ENVOY_EXT_PROC_KGATEWAY = REPO / "envoy" / "envoy-ext-proc-kgateway.yaml"
# The CRD defaults the API server fills in for fields left out.
CRD_MODE_DEFAULTS = {
    "requestHeaderMode": "SEND", "requestBodyMode": "NONE", "requestTrailerMode": "SKIP",
    "responseHeaderMode": "SEND", "responseBodyMode": "NONE", "responseTrailerMode": "SKIP",
}


def envoy_modes(modes: dict[str, str]) -> dict[str, str]:
    """A CRD processingMode as Envoy's ProcessingMode (requestHeaderMode ->
    request_header_mode), CRD defaults filled in."""
    filled = {**CRD_MODE_DEFAULTS, **modes}
    return {re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), k): v for k, v in filled.items()}


def kgateway_ext_proc_render(docs: list[Doc]) -> dict[str, Any]:
    """The HTTP filters, the route's typed_per_filter_config and the server's
    cluster kgateway generates from the GatewayExtension and the TrafficPolicy."""
    policy = next(d for d in find(docs, "TrafficPolicy", "kgateway") if (d.spec.get("extProc") or {}).get("extensionRef"))
    ref = policy.spec["extProc"]["extensionRef"]
    ext = resolve(docs, "GatewayExtension", ref["name"], ref.get("namespace", policy.namespace))
    assert ext is not None, f"{policy.where}: no GatewayExtension {ref['name']}"
    spec = ext.spec["extProc"]
    backend = spec["grpcService"]["backendRef"]
    service = resolve(docs, "Service", backend["name"], backend.get("namespace", ext.namespace))
    assert service is not None, f"{ext.where}: no Service {backend['name']}"
    port = next(p for p in service.spec["ports"] if p["port"] == backend["port"])
    cluster_name = f"kube_{service.namespace}_{service.name}_{port['port']}"
    ext_proc: dict[str, Any] = {
        "@type": EXT_PROC_FILTER_TYPE,
        "grpc_service": {"envoy_grpc": {"cluster_name": cluster_name}},
        "failure_mode_allow": spec.get("failOpen", True),
        # protojson leaves out a false bool; the shipped file spells it out.
        "allow_mode_override": spec.get("allowProcessingModeOverride", False),
    }
    timeout = kgateway_duration_secs(spec.get("messageTimeout"))
    if timeout is not None:
        ext_proc["message_timeout"] = f"{timeout:g}s"
    if spec.get("processingMode") is not None:
        ext_proc["processing_mode"] = envoy_modes(spec["processingMode"])
    name = f"ext_proc/{ext.namespace}/{ext.name}"
    disable_ns = "dev.kgateway.disable_ext_proc"
    filters = [
        {"name": "global_disable/ext_proc", "disabled": True, "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config",
            "metadata": [{"metadata_namespace": disable_ns, "value": {"disable": True}}]}},
        {"name": name, "disabled": True, "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {"name": "composite_ext_proc", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.Composite"}},
            "xds_matcher": {"matcher_list": {"matchers": [{
                "predicate": {"single_predicate": {
                    "input": {"name": "disable", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DynamicMetadataInput",
                        "filter": disable_ns, "path": [{"key": "disable"}]}},
                    "custom_match": {"name": "envoy.matching.matchers.metadata_matcher", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.matching.input_matchers.metadata.v3.Metadata",
                        "value": {"bool_match": True}, "invert": True}}}},
                "on_match": {"action": {"name": "composite-action", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.ExecuteFilterAction",
                    "typed_config": {"name": "envoy.filters.http.ext_proc", "typed_config": ext_proc}}}},
            }]}},
        }},
    ]
    per_route = {name: {"@type": EXT_PROC_PER_ROUTE_TYPE, "overrides": {
        "processing_mode": envoy_modes(policy.spec["extProc"].get("processingMode") or {})}}}
    protocol: dict[str, Any] = {"http2_protocol_options": {}} if port.get("appProtocol") in H2_APP_PROTOCOLS \
        else {"http_protocol_options": {}}
    cluster = {
        "name": cluster_name, "type": "STATIC", "connect_timeout": "0.25s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": protocol}},
        "load_assignment": {"cluster_name": cluster_name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port["port"]}}}}]}]},
    }
    return {"filters": filters, "per_route": per_route, "cluster": cluster, "ext_proc": ext_proc}


def kgateway_ext_proc_bootstrap(docs: list[Doc]) -> dict[str, Any]:
    """The rendered filters on a listener, the route hashed as the agents'
    BackendConfigPolicy says, and the server's cluster."""
    rendered = kgateway_ext_proc_render(docs)
    bcp = next(d for d in find(docs, "BackendConfigPolicy", "kgateway")
               if any(a in (d.spec.get("loadBalancer") or {}) for a in ("maglev", "ringHash")))
    lb_spec = bcp.spec["loadBalancer"]
    algorithm = "maglev" if "maglev" in lb_spec else "ringHash"
    hash_policy = [{"header": {"header_name": h["header"]["name"]}, **({"terminal": True} if h.get("terminal") else {})}
                   for h in lb_spec[algorithm]["hashPolicies"]]
    route = {"match": {"prefix": "/"}, "typed_per_filter_config": rendered["per_route"],
             "route": {"cluster": "agents", "timeout": "0s", "hash_policy": hash_policy}}
    if algorithm == "maglev":
        lb = {"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": lb_spec["maglev"].get("tableSize", 65537)}}
    else:
        lb = {"lb_policy": "RING_HASH",
              "ring_hash_lb_config": {"minimum_ring_size": lb_spec["ringHash"].get("minimumRingSize", 1024)}}
    config = bootstrap(rendered["filters"][1], route, lb, None)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"].insert(0, rendered["filters"][0])
    config["static_resources"]["clusters"].append(rendered["cluster"])
    return config


def shipped_http_filters(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.router"]
    return cfg, filters, hcm["route_config"]["virtual_hosts"][0]["routes"][0]


def test_shipped_kgateway_ext_proc_config_is_what_the_manifests_render(docs: list[Doc]) -> None:
    rendered = kgateway_ext_proc_render(docs)
    cluster = rendered["cluster"]["name"]
    expected = json.loads(json.dumps(rendered["filters"]).replace(json.dumps(cluster), json.dumps(SHIPPED_EXT_PROC_CLUSTER)))
    cfg, filters, route = shipped_http_filters(ENVOY_EXT_PROC_KGATEWAY)
    assert filters == expected, f"{ENVOY_EXT_PROC_KGATEWAY.name}: http filters differ from the kgateway rendering"
    assert route.get("typed_per_filter_config") == rendered["per_route"], route.get("typed_per_filter_config")
    assert any(c["name"] == SHIPPED_EXT_PROC_CLUSTER for c in cfg["static_resources"]["clusters"])

    # The plain variant runs the same ext_proc filter with the same route,
    # and both keep envoy/envoy.yaml's route and agents' cluster.
    plain_cfg, plain_filters, plain_route = shipped_http_filters(ENVOY_EXT_PROC)
    assert [f["name"] for f in plain_filters] == ["envoy.filters.http.ext_proc"]
    inner = expected[1]["typed_config"]["xds_matcher"]["matcher_list"]["matchers"][0]["on_match"]["action"]
    assert plain_filters[0]["typed_config"] == inner["typed_config"]["typed_config"]["typed_config"]
    wasm_cfg = yaml.safe_load((REPO / "envoy" / "envoy.yaml").read_text(encoding="utf-8"))
    wasm_route = wasm_cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]
    for c in (cfg, plain_cfg):
        assert c["static_resources"]["clusters"][0] == wasm_cfg["static_resources"]["clusters"][0]
    assert route["route"] == plain_route["route"] == wasm_route["route"]


@pytest.mark.parametrize("version", sorted(ENVOYS))
def test_kgateway_ext_proc_configuration_loads_in_envoy(docs: list[Doc], version: str, tmp_path: Path) -> None:
    envoy = ENVOYS[version]
    if not envoy.is_file():
        pytest.skip(f"Envoy {version} is not installed at {envoy} (scripts/setup.sh installs it)")
    result = envoy_validate(envoy, kgateway_ext_proc_bootstrap(docs), tmp_path)
    assert result.returncode == 0, f"Envoy {version} rejects the kgateway ext_proc config:\n{result.stdout}{result.stderr}"

    # The per-route override is validated too: a bad mode is refused.
    broken = kgateway_ext_proc_bootstrap(mutated(docs, "TrafficPolicy", lambda b: b["spec"]["extProc"][
        "processingMode"].update(requestBodyMode="BUFFERED_PARTIALLY")))
    result = envoy_validate(envoy, broken, tmp_path)
    assert result.returncode != 0, "Envoy accepted an unknown request_body_mode in ExtProcPerRoute"


# --------------------------------------------------------------------------
# Traffic through the configuration Envoy Gateway would generate from these
# manifests: the filter disabled on the listener and enabled on the route, the
# EnvoyPatchPolicy applied, Maglev on x-context-id. Three upstream replicas
# (envoy/sandbox/upstream.py) report what reached them.

REPLICAS = ("replica-1", "replica-2", "replica-3")
# Bigger than Envoy Gateway's 32 KiB listener buffer, smaller than the
# filter's max_scan_bytes: the contextId comes after this much text.
LARGE_TEXT_BYTES = 100 * 1024
START_TIMEOUT_SECS = 30.0


def wait_for(predicate: Callable[[], bool], what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT_SECS} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def admin_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except OSError:
        return 0, ""
    finally:
        conn.close()


class Gateway:
    """An Envoy running one generated bootstrap on loopback ports."""

    def __init__(self, envoy: Path, config: dict[str, Any], upstream_ports: list[int], workdir: Path, name: str):
        config = copy.deepcopy(config)
        self.port, self.admin_port = free_port(), free_port()
        config["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}}
        listener = config["static_resources"]["listeners"][0]
        listener["address"]["socket_address"]["port_value"] = self.port
        cluster = config["static_resources"]["clusters"][0]
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
            for p in upstream_ports
        ]
        self.cluster = cluster
        self.hosts = [f"127.0.0.1:{p}" for p in upstream_ports]
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = workdir / f"{name}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(envoy), "-c", str(path), "--concurrency", "1", "--log-level", "warn",
                 "--base-id", str(40000 + os.getpid() % 10000 + len(name))],
                stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            wait_for(lambda: admin_get(self.admin_port, "/ready")[0] == 200, f"envoy {name}", self.proc, self.log)
        except Exception:
            stop(self.proc)
            raise

    def conversations(self, candidates: list[str], count: int = 6) -> dict[str, str]:
        """`count` of the candidate contextIds, each with the replica
        address this gateway's agents cluster hashes it to (crates/envoy-lb),
        at least two replicas among them. The replicas' ports, and with them
        the ring, change from run to run: fixed ids alone could all land on
        one replica, and a test of the spread would fail by chance."""
        predicted = predict_hosts(self.cluster, self.hosts, candidates)
        chosen = candidates[:count]
        if len({predicted[c] for c in chosen}) < 2:
            other = next((c for c in candidates[count:] if predicted[c] != predicted[chosen[0]]), None)
            assert other is not None, f"all {len(candidates)} candidates hash to one replica: {predicted}"
            chosen[-1] = other
        return {c: predicted[c] for c in chosen}

    def post(self, body: bytes) -> tuple[int, dict[str, Any] | None]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", "/", body=body, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if resp.status == 200 else None
        finally:
            conn.close()

    def post_h2(self, body: bytes) -> tuple[int, dict[str, Any] | None]:
        """`post` over HTTP/2 without TLS (prior knowledge), as gRPC and
        other HTTP/2 clients reach a plain-text listener."""
        with httpx.Client(http1=False, http2=True, timeout=30) as client:
            resp = client.post(f"http://127.0.0.1:{self.port}/", content=body,
                               headers={"content-type": "application/json"})
            assert resp.http_version == "HTTP/2", resp.http_version
            return resp.status_code, resp.json() if resp.status_code == 200 else None

    def counters(self) -> dict[str, int]:
        out = {}
        for line in admin_get(self.admin_port, "/stats?filter=a2a_affinity")[1].splitlines():
            m = re.match(r"^(?:.*\.)?a2a_affinity\.([a-z_]+): (\d+)$", line.strip())
            if m:
                out[m.group(1)] = int(m.group(2))
        return out


def send_message(context_id: str | None, text: str, seq: int) -> bytes:
    message: dict[str, Any] = {"role": "user", "messageId": f"m-{seq}", "parts": [{"kind": "text", "text": text}]}
    if context_id is not None:
        message["contextId"] = context_id  # after the parts: the filter must read past them
    return json.dumps({"jsonrpc": "2.0", "id": seq, "method": "message/send",
                       "params": {"message": message}}).encode()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[int], dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("upstreams")
    ports = [free_port() for _ in REPLICAS]
    log = workdir / "upstreams.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "envoy" / "sandbox" / "upstream.py"),
             *[f"--replica={n}=127.0.0.1:{p}" for n, p in zip(REPLICAS, ports)]],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "ready" in log.read_text().splitlines(), "upstream replicas", proc, log)
        yield ports, {f"127.0.0.1:{p}": n for n, p in zip(REPLICAS, ports)}
    finally:
        stop(proc)


def test_envoy_gateway_config_keeps_each_conversation_on_one_replica(
        docs: list[Doc], replicas: tuple[list[int], dict[str, str]], tmp_path: Path) -> None:
    envoy, module = needs_envoy_and_module("1.40")
    ports, replica_at = replicas
    gateway = Gateway(envoy, envoy_gateway_bootstrap(docs, module), ports, tmp_path, "eg")
    try:
        large = "x" * LARGE_TEXT_BYTES
        landed: dict[str, set[str]] = {}
        seq = 0
        conversations = gateway.conversations([f"ctx-{n}-{'ab' * n}" for n in range(24)])
        for context_id in conversations:
            for turn in range(2):
                seq += 1
                body = send_message(context_id, large if turn == 0 else f"turn {turn}", seq)
                status, report = gateway.post(body)
                assert status == 200 and report is not None, (status, gateway.log.read_text()[-2000:])
                assert report["context_ids"] == [context_id], report["context_ids"]
                assert (report["body_length"], report["body_sha256"]) == (
                    len(body), hashlib.sha256(body).hexdigest()), "the body changed on the way"
                landed.setdefault(context_id, set()).add(report["replica"])
        # Each conversation on one replica, the one Envoy's hashing of its
        # contextId picks; they are on two replicas at least.
        assert landed == {c: {replica_at[host]} for c, host in conversations.items()}, landed

        # First turn without a contextId: the filter mints one into the body
        # and the header; the follow-up with that id goes to the same replica.
        seq += 1
        status, first = gateway.post(send_message(None, "hello", seq))
        assert status == 200 and first is not None
        assert len(first["context_ids"]) == 1, first["context_ids"]
        minted = first["context_ids"][0]
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", minted), minted
        seq += 1
        status, follow_up = gateway.post(send_message(minted, "and then", seq))
        assert status == 200 and follow_up is not None
        assert follow_up["replica"] == first["replica"], (first["replica"], follow_up["replica"])

        counters = gateway.counters()
        assert counters.get("context_found", 0) >= 13 and counters.get("minted", 0) == 1, counters
    finally:
        stop(gateway.proc)


def test_without_the_buffer_patch_envoy_gateway_answers_413(
        docs: list[Doc], replicas: tuple[list[int], dict[str, str]], tmp_path: Path) -> None:
    # Why envoypatchpolicy.yaml raises the listener buffer: with Envoy
    # Gateway's 32 KiB, a body whose contextId comes after 100 KiB of text
    # never reaches the agents.
    envoy, module = needs_envoy_and_module("1.40")
    ports, _ = replicas
    config = envoy_gateway_bootstrap(docs, module)
    config["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] = ENVOY_GATEWAY_BUFFER_LIMIT
    gateway = Gateway(envoy, config, ports, tmp_path, "eg-32k")
    try:
        status, _ = gateway.post(send_message("ctx-large", "x" * LARGE_TEXT_BYTES, 1))
        assert status == 413, status
        status, report = gateway.post(send_message("ctx-small", "small", 2))
        assert status == 200 and report is not None and report["context_ids"] == ["ctx-small"]
    finally:
        stop(gateway.proc)


def istio_ecds_bootstrap(docs: list[Doc], module: Path, workdir: Path) -> dict[str, Any]:
    """The Istio shape as Envoy receives it: patch 2's filter fetching patch
    1's configuration by ECDS. istiod serves it over ADS; here a file source
    stands in for ADS, everything else is the EnvoyFilter's own text."""
    envoy_filter = wasm_envoy_filter(docs)
    patches = envoy_filter.spec["configPatches"]
    extension = copy.deepcopy(next(p["patch"]["value"] for p in patches if p["applyTo"] == "EXTENSION_CONFIG"))
    extension["typed_config"]["config"]["vm_config"]["code"] = local_code(module)
    ecds = workdir / "ecds.yaml"
    ecds.write_text(yaml.safe_dump({"version_info": "1", "resources": [
        {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", **extension}]}), encoding="utf-8")
    http_filter = copy.deepcopy(next(p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_FILTER"))
    source = http_filter["config_discovery"]["config_source"]
    source.pop("ads")
    source["path_config_source"] = {"path": str(ecds)}
    source["resource_api_version"] = "V3"
    config = istio_bootstrap(docs, module)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0] = http_filter
    # A file subscription, like any xDS one, needs a node identity.
    config["node"] = {"id": "a2a-istio-gateway", "cluster": "a2a-istio-istio.agents"}
    return config


def test_istio_config_by_ecds_keeps_each_conversation_on_one_replica(
        docs: list[Doc], replicas: tuple[list[int], dict[str, str]], tmp_path: Path) -> None:
    envoy, module = needs_envoy_and_module("1.40")
    ports, replica_at = replicas
    gateway = Gateway(envoy, istio_ecds_bootstrap(docs, module, tmp_path), ports, tmp_path, "istio")
    try:
        landed: dict[str, set[str]] = {}
        conversations = gateway.conversations([f"istio-ctx-{n}" for n in range(24)])
        context_ids = list(conversations)
        for seq in range(12):
            context_id = context_ids[seq % len(context_ids)]
            body = send_message(context_id, "x" * (LARGE_TEXT_BYTES if seq < 6 else 10), seq)
            status, report = gateway.post(body)
            assert status == 200 and report is not None, (status, gateway.log.read_text()[-2000:])
            assert report["context_ids"] == [context_id], report["context_ids"]
            assert report["body_sha256"] == hashlib.sha256(body).hexdigest(), "the body changed on the way"
            landed.setdefault(context_id, set()).add(report["replica"])
        assert landed == {c: {replica_at[host]} for c, host in conversations.items()}, landed
        assert gateway.counters().get("context_found", 0) >= 12, gateway.counters()
    finally:
        stop(gateway.proc)


# --------------------------------------------------------------------------
# Traffic through the kgateway rendering of the ext_proc manifests with the
# real server (target/release/a2a-affinity-ext-proc, from scripts/build.sh)
# running the ConfigMap's configuration. The in-memory task store stands in
# for Redis; nothing here learns tasks.

EXT_PROC_BINARY = "a2a-affinity-ext-proc"
# Twice Envoy's default buffer limit: BUFFERED_PARTIAL passes it on, where
# BUFFERED would answer 413.
HUGE_TEXT_BYTES = 2 * 1024 * 1024


def ext_proc_binary() -> Path | None:
    dirs = [Path(os.environ["CARGO_TARGET_DIR"])] if os.environ.get("CARGO_TARGET_DIR") else []
    dirs.append(REPO / "target")
    for d in dirs:
        binary = d / "release" / EXT_PROC_BINARY
        if binary.is_file():
            return binary
    return None


def needs_envoy_and_ext_proc_server() -> tuple[Path, Path]:
    envoy = ENVOYS["1.40"]
    if not envoy.is_file():
        pytest.skip(f"Envoy 1.40 is not installed at {envoy} (scripts/setup.sh installs it)")
    binary = ext_proc_binary()
    if binary is None:
        pytest.skip(f"the ext_proc server is not built: run scripts/build.sh ({EXT_PROC_BINARY})")
    sources = [*sorted((REPO / "crates" / "ext-proc" / "src").rglob("*.rs")),
               *sorted((REPO / "crates" / "core" / "src").rglob("*.rs"))]
    newest = max((s.stat().st_mtime for s in sources if s.is_file()), default=0.0)
    if binary.stat().st_mtime < newest:
        pytest.skip(f"{binary} is older than the server's sources: run scripts/build.sh")
    return envoy, binary


def shipped_ext_proc_config(docs: list[Doc]) -> str:
    """The --config file of the Deployment behind the GatewayExtension, as
    the ConfigMap holds it."""
    ext = next(d for d in find(docs, "GatewayExtension", "kgateway") if d.spec.get("extProc"))
    ref = ext.spec["extProc"]["grpcService"]["backendRef"]
    service = resolve(docs, "Service", ref["name"], ref.get("namespace", ext.namespace))
    deployment = selected_deployments(docs, service)[0]
    pod = deployment.spec["template"]["spec"]
    container = pod["containers"][0]
    name, key = mounted_file(pod, container, cli_flags(container["args"])["--config"])
    return resolve(docs, "ConfigMap", name, deployment.namespace).body["data"][key]


class ExtProcProcess:
    """The ext_proc server on loopback ports; ready when /healthz answers."""

    def __init__(self, binary: Path, config_text: str, workdir: Path):
        self.port, self.metrics_port = free_port(), free_port()
        config = workdir / "ext-proc.json"
        config.write_text(config_text, encoding="utf-8")
        self.log = workdir / "ext-proc.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(binary), "--listen", f"127.0.0.1:{self.port}",
                 "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                 "--config", str(config), "--task-store", "memory", "--shutdown-grace-secs", "1"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            wait_for(lambda: admin_get(self.metrics_port, "/healthz")[0] == 200, "ext_proc server", self.proc, self.log)
        except Exception:
            stop(self.proc)
            raise

    def counters(self) -> dict[str, int]:
        out = {}
        for line in admin_get(self.metrics_port, "/metrics")[1].splitlines():
            m = re.match(r"^a2a_affinity_([a-z_]+)_total (\d+)$", line.strip())
            if m:
                out[m.group(1)] = int(m.group(2))
        return out


def test_kgateway_ext_proc_config_keeps_each_conversation_on_one_replica(
        docs: list[Doc], replicas: tuple[list[int], dict[str, str]], tmp_path: Path) -> None:
    envoy, binary = needs_envoy_and_ext_proc_server()
    ports, replica_at = replicas
    server = ExtProcProcess(binary, shipped_ext_proc_config(docs), tmp_path)
    try:
        config = kgateway_ext_proc_bootstrap(docs)
        ext_proc_cluster = config["static_resources"]["clusters"][-1]
        ext_proc_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"]["port_value"] = server.port
        gateway = Gateway(envoy, config, ports, tmp_path, "kgateway-ext-proc")
        try:
            landed: dict[str, set[str]] = {}
            seq = 0
            conversations = gateway.conversations([f"kgw-ctx-{n}-{'cd' * n}" for n in range(24)])
            for context_id in conversations:
                for turn in range(2):
                    seq += 1
                    body = send_message(context_id, "x" * LARGE_TEXT_BYTES if turn == 0 else f"turn {turn}", seq)
                    status, report = gateway.post(body)
                    assert status == 200 and report is not None, (status, gateway.log.read_text()[-2000:])
                    assert report["context_ids"] == [context_id], (report["context_ids"], server.log.read_text()[-2000:])
                    assert (report["body_length"], report["body_sha256"]) == (
                        len(body), hashlib.sha256(body).hexdigest()), "the body changed on the way"
                    landed.setdefault(context_id, set()).add(report["replica"])
            assert landed == {c: {replica_at[host]} for c, host in conversations.items()}, landed

            # A first turn is minted a contextId (body and header); its
            # follow-up lands on the same replica.
            seq += 1
            status, first = gateway.post(send_message(None, "hello", seq))
            assert status == 200 and first is not None and len(first["context_ids"]) == 1, first
            minted = first["context_ids"][0]
            assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", minted), minted
            seq += 1
            status, follow_up = gateway.post(send_message(minted, "and then", seq))
            assert status == 200 and follow_up is not None and follow_up["replica"] == first["replica"]

            # Past the buffer limit: no 413, the body intact; the contextId
            # after 2 MiB is beyond the one body message, so no header.
            seq += 1
            body = send_message("kgw-huge", "x" * HUGE_TEXT_BYTES, seq)
            status, report = gateway.post(body)
            assert status == 200 and report is not None, status
            assert report["body_sha256"] == hashlib.sha256(body).hexdigest() and report["context_ids"] == []

            counters = server.counters()
            assert counters.get("context_found", 0) >= 13 and counters.get("minted", 0) == 1, counters

            # Fail open: with the server gone the request still goes through,
            # unchanged, without the header.
            stop(server.proc)
            seq += 1
            body = send_message("kgw-open", "server down", seq)
            started = time.monotonic()
            status, report = gateway.post(body)
            assert status == 200 and report is not None, (status, gateway.log.read_text()[-2000:])
            assert report["context_ids"] == [] and report["body_sha256"] == hashlib.sha256(body).hexdigest()
            assert time.monotonic() - started < 2.0
        finally:
            stop(gateway.proc)
    finally:
        stop(server.proc)


# --------------------------------------------------------------------------
# The dynamic module (liba2a_affinity_dynamic.so, the same filter as native
# code): deploy/envoy-gateway/dynamic-module/ (EnvoyProxy registering and
# mounting it, EnvoyExtensionPolicy attaching it, ClientTrafficPolicy
# raising the listener's limits it reads up to) and
# deploy/istio/dynamic-module/ (EnvoyFilter inserting it, the Gateway's
# Deployment overlay mounting it).

DYNAMIC_MODULE_DIR = "dynamic-module"
DYNAMIC_MODULE_FILTER = "envoy.filters.http.dynamic_modules"
DYNAMIC_MODULE_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
STRUCT_TYPE = "type.googleapis.com/google.protobuf.Struct"
# The module's only filter, and the file scripts/build.sh produces.
DYNAMIC_MODULE_FILTER_NAME = "a2a_affinity"
DYNAMIC_MODULE_SO = "liba2a_affinity_dynamic.so"
# What Rust would take its unwinder from on glibc Linux; the module links
# GCC's static one instead (crates/dynamic-abi/build.rs), because
# distroless Envoy images (Envoy Gateway's default) have only glibc.
LIBGCC = "libgcc_s.so.1"
DYNAMIC_MODULE_IMAGE = "a2a-affinity-dynamic-module"
DYNAMIC_MODULE_DOCKERFILE = DEPLOY / "envoy-gateway" / DYNAMIC_MODULE_DIR / "Dockerfile"
# Envoy's default metrics_namespace for dynamic module counters.
DYNAMIC_MODULE_METRICS_NAMESPACE = "dynamicmodulescustom"
ENVOY_GATEWAY_GROUP = "gateway.envoyproxy.io"
# The container istiod's kube-gateway template runs Envoy in, and the
# overlays its deployment controller accepts from a parametersRef ConfigMap
# (Istio 1.30/1.31 pilot/pkg/config/kube/gatewaycommon/deploymentcontroller.go).
ISTIO_PROXY_CONTAINER = "istio-proxy"
ISTIO_OVERLAY_KEYS = {"deployment", "service", "serviceAccount", "horizontalPodAutoscaler", "podDisruptionBudget"}
ISTIO_PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"


def in_dynamic_module_dir(doc: Doc) -> bool:
    return DYNAMIC_MODULE_DIR in doc.path.relative_to(DEPLOY).parts[:-1]


def dynamic_module_typed_configs(doc: Doc) -> list[dict[str, Any]]:
    return [v for v in walk(doc.body) if isinstance(v, dict) and v.get("@type") == DYNAMIC_MODULE_FILTER_TYPE]


def eg_dynamic_module_filter_name(policy: Doc, index: int) -> str:
    # Envoy Gateway v1.9: dynamicModuleFilterName() -> perRouteFilterName(
    # EnvoyFilterDynamicModules, irConfigNameForDynamicModule(policy, idx)).
    return f"{DYNAMIC_MODULE_FILTER}/envoyextensionpolicy/{policy.namespace}/{policy.name}/dynamic-module/{index}"


def envoy_proxy_for(docs: list[Doc], gateway: Doc) -> Doc | None:
    """The EnvoyProxy Envoy Gateway uses for a Gateway: its own
    infrastructure.parametersRef first, else its GatewayClass's."""
    ref = (gateway.spec.get("infrastructure") or {}).get("parametersRef") or {}
    if ref.get("group") == ENVOY_GATEWAY_GROUP and ref.get("kind") == "EnvoyProxy":
        return resolve(docs, "EnvoyProxy", ref.get("name", ""), gateway.namespace)
    gateway_class = next((c for c in find(docs, "GatewayClass") if c.name == gateway.spec.get("gatewayClassName")), None)
    ref = (gateway_class.spec.get("parametersRef") if gateway_class else None) or {}
    if ref.get("group") == ENVOY_GATEWAY_GROUP and ref.get("kind") == "EnvoyProxy":
        return resolve(docs, "EnvoyProxy", ref.get("name", ""), ref.get("namespace", "default"))
    return None


def policy_gateways(docs: list[Doc], policy: Doc) -> list[tuple[dict[str, Any], list[Doc]]]:
    """Each targetRef of a policy with the Gateways it ends up on."""
    out = []
    for ref in target_refs(policy):
        target = resolve(docs, ref.get("kind", ""), ref.get("name", ""), policy.namespace)
        if target is None:
            out.append((ref, []))
        elif target.kind == "Gateway":
            out.append((ref, [target]))
        else:
            gateways = [resolve(docs, "Gateway", p.get("name", ""), p.get("namespace", target.namespace))
                        for p in target.spec.get("parentRefs") or []]
            out.append((ref, [g for g in gateways if g is not None]))
    return out


def eg_proxy_pod(proxy: Doc) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod parts an EnvoyProxy adds to its Envoy Deployment, as
    (pod: initContainers, volumes), (the envoy container: volumeMounts, env)."""
    deployment = ((proxy.spec.get("provider") or {}).get("kubernetes") or {}).get("envoyDeployment") or {}
    pod = {"initContainers": deployment.get("initContainers") or [],
           "volumes": (deployment.get("pod") or {}).get("volumes") or []}
    return pod, deployment.get("container") or {}


def module_mount_errors(where: str, pod: dict[str, Any], container: dict[str, Any], path: str) -> list[str]:
    """The module path Envoy is told to load must be a file the pod has: a
    volume mounted read-only at its directory in the proxy container, filled
    by the module image's init container (or the image itself as a volume)."""
    errs: list[str] = []
    directory, filename = posixpath.split(path)
    if filename != DYNAMIC_MODULE_SO:
        errs.append(f"{where}: the module file is {filename!r}, not {DYNAMIC_MODULE_SO} (what the image ships)")
    mounts = [m for m in container.get("volumeMounts") or [] if str(m.get("mountPath", "")).rstrip("/") == directory]
    if len(mounts) != 1:
        return errs + [f"{where}: no volume is mounted at {directory} in the proxy container, but the module "
                       f"is loaded from {path}"]
    mount = mounts[0]
    if mount.get("readOnly") is not True:
        errs.append(f"{where}: mount the module volume readOnly in the proxy container")
    volume = next((v for v in pod.get("volumes") or [] if v.get("name") == mount.get("name")), None)
    if volume is None:
        errs.append(f"{where}: the proxy container mounts volume {mount.get('name')!r}, which the pod does not have")
    elif "image" in volume:
        if DYNAMIC_MODULE_IMAGE not in str(volume["image"].get("reference", "")) or mount.get("subPath") != "module":
            errs.append(f"{where}: an image volume must be the module image, mounted with subPath: module")
    elif "emptyDir" in volume:
        fillers = [c for c in pod.get("initContainers") or []
                   if any(m.get("name") == mount.get("name") for m in c.get("volumeMounts") or [])]
        if not fillers:
            errs.append(f"{where}: no init container fills the emptyDir {mount.get('name')!r}")
        for c in fillers:
            target = next(str(m.get("mountPath", "")).rstrip("/") for m in c["volumeMounts"]
                          if m.get("name") == mount.get("name"))
            command = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
            wanted = f"/module/{filename}"
            if command[:1] != ["cp"] or wanted not in command[1:-1] or command[-1].rstrip("/") != target:
                errs.append(f"{where}: init container {c.get('name')} must copy {wanted} from the module "
                            f"image into its mount of the volume ({target}): {command}")
            if DYNAMIC_MODULE_IMAGE not in str(c.get("image", "")):
                errs.append(f"{where}: init container {c.get('name')} does not run the {DYNAMIC_MODULE_IMAGE} image")
    else:
        errs.append(f"{where}: volume {mount.get('name')!r} must be an emptyDir filled by an init container "
                    "or an image volume of the module image")
    return errs


def hashed_by_backend_traffic_policy(docs: list[Doc], namespace: str, kind: str, name: str) -> bool:
    return any(
        (p.spec.get("loadBalancer") or {}).get("type") == "ConsistentHash"
        and any(r.get("kind") == kind and r.get("name") == name for r in p.spec.get("targetRefs") or [])
        for p in find(docs, "BackendTrafficPolicy") if p.namespace == namespace
    )


# A Kubernetes quantity as Envoy Gateway reads a size (the CRD's pattern,
# then AsInt64): digits, optionally with a binary or a decimal suffix.
QUANTITY = re.compile(r"([1-9][0-9]*)([KMGTPE]i|[kMGTPE])?")
QUANTITY_FACTORS = {None: 1, **{s: 1000 ** (i + 1) for i, s in enumerate("kMGTPE")},
                    **{f"{s}i": 1024 ** (i + 1) for i, s in enumerate("KMGTPE")}}


def quantity_bytes(value: Any) -> int | None:
    if type(value) is int:
        return value
    m = QUANTITY.fullmatch(str(value))
    return int(m.group(1)) * QUANTITY_FACTORS[m.group(2)] if m else None


def client_traffic_policy(docs: list[Doc], gateway: Doc) -> tuple[Doc | None, list[str]]:
    """The ClientTrafficPolicy Envoy Gateway v1.9 applies to a Gateway's
    listener (the shipped Gateways have one; internal/gatewayapi/
    clienttrafficpolicy.go): one that names the listener (sectionName)
    before one that names the whole Gateway, and of several at one level
    only the oldest, the others marked Conflicted. With the problems found:
    several at one level (which one applies then depends on creation times
    the files do not have)."""
    listeners = {listener.get("name") for listener in gateway.spec.get("listeners") or []}
    by_listener: list[Doc] = []
    whole: list[Doc] = []
    for policy in find(docs, "ClientTrafficPolicy"):
        if policy.namespace != gateway.namespace:
            continue
        for ref in target_refs(policy):
            if ref.get("kind") != "Gateway" or ref.get("name") != gateway.name:
                continue
            level = whole if ref.get("sectionName") is None else by_listener if ref["sectionName"] in listeners else None
            if level is not None and policy not in level:
                level.append(policy)
    problems = [f"{len(level)} ClientTrafficPolicies target {what}Gateway {gateway.name}: Envoy Gateway applies "
                "the oldest and marks the others Conflicted"
                for level, what in ((by_listener, "a listener of "), (whole, "")) if len(level) > 1]
    return next(iter(by_listener or whole), None), problems


def eg_client_limits(docs: list[Doc], gateway: Doc) -> tuple[dict[str, int], list[str]]:
    """What Envoy Gateway v1.9 gives a Gateway's listener, from the
    ClientTrafficPolicy that applies or its defaults (internal/gatewayapi/
    clienttrafficpolicy.go, http.go; internal/xds/translator/listener.go):
    the per-connection buffer limit (`buffer`), the HTTP/2 stream and
    connection windows and concurrent streams (`stream`, `connection`,
    `streams`). A value Envoy Gateway refuses makes it apply none of the
    policy and answer 500 on every route of the listener: a problem, with
    the defaults."""
    limits = {"buffer": ENVOY_GATEWAY_BUFFER_LIMIT, "stream": ENVOY_GATEWAY_H2_STREAM_WINDOW,
              "connection": ENVOY_GATEWAY_H2_CONNECTION_WINDOW, "streams": ENVOY_GATEWAY_H2_MAX_STREAMS}
    policy, problems = client_traffic_policy(docs, gateway)
    if policy is None:
        return limits, problems
    connection = policy.spec.get("connection") or {}
    http2 = policy.spec.get("http2") or {}
    values: dict[str, int] = {}
    refused = []
    for key, field, value, low, high in (
            ("buffer", "connection.bufferLimit", connection.get("bufferLimit"), 0, 2 ** 32 - 1),
            ("stream", "http2.initialStreamWindowSize", http2.get("initialStreamWindowSize"), 65535, 2 ** 31 - 1),
            ("connection", "http2.initialConnectionWindowSize", http2.get("initialConnectionWindowSize"), 65535, 2 ** 31 - 1)):
        if value is None:
            continue
        size = quantity_bytes(value)
        if size is None or not low <= size <= high:
            refused.append(f"ClientTrafficPolicy {policy.name}: Envoy Gateway refuses {field} {value!r} (a size from "
                           f"{low} to {high}), applies none of the policy and answers 500 on every route of the listener")
        else:
            values[key] = size
    if "maxConcurrentStreams" in http2:
        values["streams"] = http2["maxConcurrentStreams"]
    if not refused:
        limits.update(values)
    return limits, problems + refused


def eg_scan_limit_errors(where: str, docs: list[Doc], gateway: Doc, scan: Any) -> list[str]:
    """The module reads up to max_scan_bytes or the stream's buffer limit,
    whichever is lower: on Envoy Gateway the listener's buffer for HTTP/1.1,
    the stream window for HTTP/2. Both must let it read max_scan_bytes."""
    limits, problems = eg_client_limits(docs, gateway)
    errs = [f"{where}: Gateway {gateway.name}: {problem}" for problem in problems]
    for key, what in (("buffer", "the listener buffer, an HTTP/1.1 request's limit (ClientTrafficPolicy "
                                 f"connection.bufferLimit; Envoy Gateway's default {ENVOY_GATEWAY_BUFFER_LIMIT})"),
                      ("stream", "the HTTP/2 stream window, a stream's limit (ClientTrafficPolicy "
                                 f"http2.initialStreamWindowSize; Envoy Gateway's default {ENVOY_GATEWAY_H2_STREAM_WINDOW})")):
        # A max_scan_bytes that is no integer is filter_config_errors' to report.
        if isinstance(scan, int) and limits[key] < scan:
            errs.append(f"{where}: on Gateway {gateway.name} {what} is {limits[key]} bytes, below max_scan_bytes "
                        f"{scan}: the module reads no further, and a contextId past it is not found")
    return errs


def eg_dynamic_module_errors(docs: list[Doc]) -> list[str]:
    errs: list[str] = []
    policies = [d for d in find(docs, "EnvoyExtensionPolicy") if d.spec.get("dynamicModule")]
    if not policies:
        errs.append("no EnvoyExtensionPolicy attaches the dynamic module")
    for policy in policies:
        for index, dm in enumerate(policy.spec["dynamicModule"]):
            where = f"{policy.where} dynamicModule[{index}]"
            if dm.get("filterName") != DYNAMIC_MODULE_FILTER_NAME:
                errs.append(f"{where}: filterName must be {DYNAMIC_MODULE_FILTER_NAME} (the module's only filter)")
            if dm.get("terminalFilter"):
                errs.append(f"{where}: the filter is not terminal")
            errs += filter_config_errors(where, dm.get("config", {}))
            for ref, gateways in policy_gateways(docs, policy):
                if not gateways:
                    errs.append(f"{where}: target {ref.get('kind')} {ref.get('name')} reaches no Gateway under deploy/")
                if not hashed_by_backend_traffic_policy(docs, policy.namespace, ref.get("kind", ""), ref.get("name", "")):
                    errs.append(f"{where}: no BackendTrafficPolicy hashes {ref.get('kind')} {ref.get('name')}")
                for gateway in gateways:
                    errs += eg_scan_limit_errors(where, docs, gateway,
                                                 dm.get("config", {}).get("max_scan_bytes", FILTER_DEFAULT_MAX_SCAN_BYTES))
                    proxy = envoy_proxy_for(docs, gateway)
                    if proxy is None:
                        errs.append(f"{where}: Gateway {gateway.name} has no EnvoyProxy (infrastructure.parametersRef "
                                    "or its GatewayClass's) to register the module")
                        continue
                    entry = next((e for e in proxy.spec.get("dynamicModules") or [] if e.get("name") == dm.get("name")), None)
                    if entry is None:
                        errs.append(f"{where}: module {dm.get('name')!r} is not in EnvoyProxy {proxy.name}'s "
                                    "dynamicModules: Envoy Gateway answers 500 on the route")
                        continue
                    source = entry.get("source") or {}
                    if source.get("type", "Local") == "Local":
                        pod, container = eg_proxy_pod(proxy)
                        errs += module_mount_errors(f"{proxy.where} dynamicModules[{entry.get('name')}]", pod, container,
                                                    str((source.get("local") or {}).get("path", "")))
    # The Wasm path needs an EnvoyPatchPolicy; this one must not drag one in.
    errs += [f"{d.where}: no EnvoyPatchPolicy belongs with the dynamic module"
             for d in find(docs, "EnvoyPatchPolicy") if in_dynamic_module_dir(d)]
    return errs


def test_envoy_gateway_dynamic_module_is_registered_and_mounted(docs: list[Doc]) -> None:
    errors = eg_dynamic_module_errors(docs)
    assert not errors, "\n".join(errors)


def dynamic_filter_config(typed_config: dict[str, Any]) -> tuple[Any, str | None]:
    """The JSON configuration a DynamicModuleFilter hands the module, or an error."""
    filter_config = typed_config.get("filter_config") or {}
    if filter_config.get("@type") == STRING_VALUE_TYPE:
        try:
            return json.loads(filter_config.get("value", "")), None
        except json.JSONDecodeError as e:
            return None, f"filter_config is not JSON: {e}"
    if filter_config.get("@type") == STRUCT_TYPE:
        return filter_config.get("value"), None
    return None, "filter_config must be a google.protobuf.StringValue (or Struct) holding the JSON configuration"


def istio_overlay(docs: list[Doc], gateway: Doc) -> tuple[Doc | None, dict[str, Any] | None, str | None]:
    """The ConfigMap an Istio Gateway names in infrastructure.parametersRef
    and its parsed `deployment` overlay."""
    ref = (gateway.spec.get("infrastructure") or {}).get("parametersRef") or {}
    if ref.get("kind") != "ConfigMap" or ref.get("group", "") != "":
        return None, None, f"{gateway.where}: no infrastructure.parametersRef to a ConfigMap puts the module in its pod"
    config_map = resolve(docs, "ConfigMap", ref.get("name", ""), gateway.namespace)
    if config_map is None:
        return None, None, f"{gateway.where}: ConfigMap {ref.get('name')} is not in deploy/"
    raw = (config_map.body.get("data") or {}).get("deployment")
    try:
        overlay = yaml.safe_load(raw) if isinstance(raw, str) else None
    except yaml.YAMLError as e:
        return config_map, None, f"{config_map.where}: deployment is not YAML: {e}"
    if not isinstance(overlay, dict):
        return config_map, None, f"{config_map.where}: no `deployment` overlay"
    return config_map, overlay, None


def istio_dynamic_module_errors(docs: list[Doc]) -> list[str]:
    errs: list[str] = []
    filters = [d for d in find(docs, "EnvoyFilter") if dynamic_module_typed_configs(d)]
    if not filters:
        errs.append("no EnvoyFilter inserts the dynamic module")
    for d in filters:
        paths: list[str] = []
        namespaces: set[str] = set()
        for i, p in enumerate(d.spec.get("configPatches") or []):
            where = f"{d.where} configPatches[{i}]"
            value = (p.get("patch") or {}).get("value") or {}
            typed = value.get("typed_config") or {}
            if typed.get("@type") != DYNAMIC_MODULE_FILTER_TYPE:
                continue
            router = (p.get("match") or {}).get("listener", {}).get("filterChain", {}).get("filter", {}) \
                .get("subFilter", {}).get("name")
            if p.get("applyTo") != "HTTP_FILTER" or p["patch"].get("operation") != "INSERT_BEFORE" \
                    or router != "envoy.filters.http.router":
                errs.append(f"{where}: the filter must be an HTTP_FILTER inserted before envoy.filters.http.router")
            if (p.get("match") or {}).get("context") not in ("GATEWAY", "SIDECAR_OUTBOUND", "WAYPOINT"):
                errs.append(f"{where}: the hash is chosen by the proxy that sends to the agents "
                            "(GATEWAY, SIDECAR_OUTBOUND or WAYPOINT)")
            if typed.get("filter_name") != DYNAMIC_MODULE_FILTER_NAME:
                errs.append(f"{where}: filter_name must be {DYNAMIC_MODULE_FILTER_NAME}")
            config, error = dynamic_filter_config(typed)
            errs += [f"{where}: {error}"] if error else filter_config_errors(where, config)
            module_config = typed.get("dynamic_module_config") or {}
            path = (((module_config.get("module") or {}).get("local")) or {}).get("filename")
            if not path:
                errs.append(f"{where}: load the module by file (dynamic_module_config.module.local.filename) so "
                            "that the path can be checked against the pod")
            else:
                paths.append(str(path))
            namespaces.add(module_config.get("metrics_namespace") or DYNAMIC_MODULE_METRICS_NAMESPACE)
        targets = [resolve(docs, r.get("kind", ""), r.get("name", ""), d.namespace) for r in d.spec.get("targetRefs") or []]
        gateways = [g for g in targets if g is not None and g.kind == "Gateway"]
        if not gateways:
            errs.append(f"{d.where}: target a Gateway under deploy/ (its pod must carry the module)")
        for gateway in gateways:
            config_map, overlay, error = istio_overlay(docs, gateway)
            if error:
                errs.append(error)
                continue
            assert config_map is not None and overlay is not None
            errs += [f"{config_map.where}: istiod rejects overlay {k!r} (supported: {sorted(ISTIO_OVERLAY_KEYS)})"
                     for k in set(config_map.body.get("data") or {}) - ISTIO_OVERLAY_KEYS]
            template = (overlay.get("spec") or {}).get("template") or {}
            pod = template.get("spec") or {}
            container = next((c for c in pod.get("containers") or [] if c.get("name") == ISTIO_PROXY_CONTAINER), {})
            for path in paths:
                errs += module_mount_errors(f"{config_map.where} deployment", pod, container, path)
            # Istio's bootstrap keeps only the stats its inclusion list names.
            raw = ((template.get("metadata") or {}).get("annotations") or {}).get(ISTIO_PROXY_CONFIG_ANNOTATION)
            proxy_config = yaml.safe_load(raw) if isinstance(raw, str) else {}
            prefixes = ((proxy_config or {}).get("proxyStatsMatcher") or {}).get("inclusionPrefixes") or []
            for ns in namespaces:
                if not any(ns.startswith(str(prefix)) for prefix in prefixes):
                    errs.append(f"{config_map.where}: the pod's {ISTIO_PROXY_CONFIG_ANNOTATION} must add {ns!r} to "
                                "proxyStatsMatcher.inclusionPrefixes, or Istio drops the module's counters")
            routes = [r for r in find(docs, "HTTPRoute")
                      if any(p.get("name") == gateway.name for p in r.spec.get("parentRefs") or [])]
            if not routes:
                errs.append(f"{gateway.where}: no HTTPRoute under deploy/ uses this Gateway")
            for route in routes:
                for rule in route.spec.get("rules") or []:
                    for backend in rule.get("backendRefs") or []:
                        if not any(dr.spec.get("host", "").split(".")[0] == backend.get("name")
                                   and ((dr.spec.get("trafficPolicy") or {}).get("loadBalancer") or {}).get("consistentHash")
                                   for dr in find(docs, "DestinationRule")):
                            errs.append(f"{route.where}: backend {backend.get('name')} has no DestinationRule "
                                        "with consistentHash")
    return errs


def test_istio_dynamic_module_is_inserted_and_mounted(docs: list[Doc]) -> None:
    errors = istio_dynamic_module_errors(docs)
    assert not errors, "\n".join(errors)


def k8s_pod_schemas(crds: dict) -> dict[str, dict[str, Any]]:
    """The Kubernetes Container and Volume schemas, as embedded (in full) in
    Envoy Gateway's EnvoyProxy CRD, made strict."""
    spec = crd_schema(crds[(ENVOY_GATEWAY_GROUP, "EnvoyProxy")], "v1alpha1")["properties"]["spec"]
    deployment = spec["properties"]["provider"]["properties"]["kubernetes"]["properties"]["envoyDeployment"]["properties"]
    return {"container": deployment["initContainers"]["items"],
            "volume": deployment["pod"]["properties"]["volumes"]["items"]}


def istio_overlay_errors(where: str, overlay: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> list[str]:
    """A Deployment overlay touching only the pod template's annotations,
    labels, init containers, containers and volumes, each valid Kubernetes."""
    errs: list[str] = []

    def only(path: str, value: Any, keys: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            errs.append(f"{where}: {path} must be a mapping")
            return {}
        errs.extend(f"{where}: unexpected {path}.{k}" for k in set(value) - keys)
        return value

    spec = only("deployment", overlay, {"spec"}).get("spec", {})
    template = only("spec", spec, {"template"}).get("template", {})
    template = only("spec.template", template, {"metadata", "spec"})
    only("spec.template.metadata", template.get("metadata", {}), {"annotations", "labels"})
    pod = only("spec.template.spec", template.get("spec", {}), {"initContainers", "containers", "volumes"})
    for key, schema in (("initContainers", "container"), ("containers", "container"), ("volumes", "volume")):
        validator = jsonschema.Draft7Validator(schemas[schema])
        for i, item in enumerate(pod.get(key) or []):
            errs += [f"{where}: spec.template.spec.{key}[{i}]/{'/'.join(map(str, e.absolute_path))}: {e.message}"
                     for e in validator.iter_errors(item)]
    return errs


def test_istio_deployment_overlay_validates_as_kubernetes(docs: list[Doc], crds: dict) -> None:
    schemas = k8s_pod_schemas(crds)
    overlays = []
    for gateway in find(docs, "Gateway", "istio"):
        config_map, overlay, _ = istio_overlay(docs, gateway)
        if config_map is not None and overlay is not None:
            overlays.append((config_map, overlay))
    assert overlays, "no Istio Gateway names a ConfigMap with a deployment overlay"
    errors = [e for cm, overlay in overlays for e in istio_overlay_errors(f"{cm.where} deployment", overlay, schemas)]
    assert not errors, "\n".join(errors)


def test_dynamic_module_image_holds_what_the_init_containers_copy() -> None:
    text = DYNAMIC_MODULE_DOCKERFILE.read_text(encoding="utf-8")
    copies = [line.split() for line in text.splitlines() if line.startswith("COPY ")]
    destinations = {c[-1]: c[-2] for c in copies}
    assert destinations.get(f"/module/{DYNAMIC_MODULE_SO}") == f"target/release-native/{DYNAMIC_MODULE_SO}", copies
    # The module needs glibc only: nothing else goes beside it.
    assert not any(LIBGCC in c[-1] for c in copies), copies


def test_the_docker_build_context_holds_what_the_dockerfiles_copy() -> None:
    # .dockerignore drops everything (target/ and the virtualenvs would
    # otherwise be sent to the engine) but the files the Dockerfiles copy.
    ignore = [line for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "*", ignore
    kept = {line[1:] for line in ignore[1:] if line.startswith("!")}
    assert len(kept) == len(ignore) - 1, ignore
    sources = set()
    for dockerfile in (DYNAMIC_MODULE_DOCKERFILE, REPO / "crates" / "ext-proc" / "Dockerfile"):
        for line in dockerfile.read_text(encoding="utf-8").splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                sources.add(line.split()[1])
    assert sources == kept
    # Where scripts/build.sh builds them.
    build = (REPO / "scripts" / "build.sh").read_text(encoding="utf-8")
    assert "--profile release-native" in build
    assert all(s.startswith("target/release-native/") for s in sources), sources


# --- the same checks on broken copies

def overlay_edit(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        overlay = yaml.safe_load(body["data"]["deployment"])
        change(overlay)
        body["data"]["deployment"] = yaml.safe_dump(overlay)
    return edit


def eg_envoy_deployment(body: dict[str, Any]) -> dict[str, Any]:
    return body["spec"]["provider"]["kubernetes"]["envoyDeployment"]


def istio_pod(overlay: dict[str, Any]) -> dict[str, Any]:
    return overlay["spec"]["template"]["spec"]


def test_dynamic_module_schemas_reject_misspelled_fields_and_bad_enums(docs: list[Doc], crds: dict) -> None:
    def rename(d: dict[str, Any], old: str, new: str) -> None:
        d[new] = d.pop(old)

    cases: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
        ("EnvoyProxy", "a2a-affinity-dynamic", lambda b: rename(b["spec"], "dynamicModules", "dynamicModule"),
         "dynamicModule"),
        ("EnvoyProxy", "a2a-affinity-dynamic", lambda b: b["spec"]["dynamicModules"][0]["source"].update(type="Locl"),
         "Locl"),
        ("EnvoyProxy", "a2a-affinity-dynamic", lambda b: rename(b["spec"]["dynamicModules"][0], "doNotClose", "doNotclose"),
         "doNotclose"),
        ("EnvoyProxy", "a2a-affinity-dynamic",
         lambda b: rename(eg_envoy_deployment(b)["initContainers"][0], "volumeMounts", "volumeMount"), "volumeMount"),
        ("EnvoyExtensionPolicy", "a2a-affinity-dynamic",
         lambda b: rename(b["spec"]["dynamicModule"][0], "filterName", "filtername"), "filtername"),
        # Module names are DNS-like: no underscores.
        ("EnvoyExtensionPolicy", "a2a-affinity-dynamic", lambda b: b["spec"]["dynamicModule"][0].update(name="a2a_affinity"),
         "a2a_affinity"),
        ("EnvoyFilter", "a2a-affinity-dynamic", lambda b: b["spec"]["configPatches"][0].update(applyTo="HTTP_FILTERS"),
         "HTTP_FILTERS"),
        ("Gateway", "a2a-eg-dynamic", lambda b: rename(b["spec"]["infrastructure"], "parametersRef", "parameterRef"),
         "parameterRef"),
        ("ClientTrafficPolicy", "a2a-affinity-dynamic",
         lambda b: rename(b["spec"]["http2"], "initialStreamWindowSize", "initialStreamWindow"), "initialStreamWindow"),
        ("ClientTrafficPolicy", "a2a-affinity-dynamic", lambda b: b["spec"]["connection"].update(bufferLimit="1 MiB"),
         "1 MiB"),
    ]
    for kind, name, change, expected in cases:
        doc = next(d for d in mutated(docs, kind, change, name=name) if d.kind == kind and d.name == name)
        errors = schema_errors(doc, crds)
        assert any(expected in e for e in errors), (kind, expected, errors)

    schemas = k8s_pod_schemas(crds)
    for change, expected in [
        (lambda o: rename(istio_pod(o)["initContainers"][0], "volumeMounts", "volumeMount"), "volumeMount"),
        (lambda o: istio_pod(o)["volumes"][0]["emptyDir"].update(sizeLimit="16 megs"), "16 megs"),
        (lambda o: o["spec"]["template"].update(metdata={}), "metdata"),
    ]:
        broken = mutated(docs, "ConfigMap", overlay_edit(change), name="a2a-istio-dynamic-module")
        cm = next(d for d in broken if d.kind == "ConfigMap" and d.name == "a2a-istio-dynamic-module")
        errors = istio_overlay_errors(cm.where, yaml.safe_load(cm.body["data"]["deployment"]), schemas)
        assert any(expected in e for e in errors), (expected, errors)


def test_dynamic_module_checks_reject_broken_copies(docs: list[Doc]) -> None:
    def eg_container(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        return lambda b: change(eg_envoy_deployment(b)["container"])

    def istio_filter(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        return lambda b: change(b["spec"]["configPatches"][0]["patch"]["value"]["typed_config"])

    def istio_config(extra: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
        def change(typed: dict[str, Any]) -> None:
            typed["filter_config"]["value"] = json.dumps({**json.loads(typed["filter_config"]["value"]), **extra})
        return istio_filter(change)

    patch_policy = {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyPatchPolicy",
                    "metadata": {"name": "a2a-affinity-dynamic", "namespace": "agents"}, "spec": {}}
    eg_cases: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
        ("EnvoyExtensionPolicy", "a2a-affinity-dynamic", lambda b: b["spec"]["dynamicModule"][0].update(name="a2a-other"),
         "500"),
        ("EnvoyExtensionPolicy", "a2a-affinity-dynamic",
         lambda b: b["spec"]["dynamicModule"][0].update(filterName="a2a-affinity"), "filterName"),
        ("EnvoyExtensionPolicy", "a2a-affinity-dynamic",
         lambda b: b["spec"]["dynamicModule"][0]["config"].update(headerName="x-context-id"), "unknown filter field"),
        ("EnvoyExtensionPolicy", "a2a-affinity-dynamic",
         lambda b: b["spec"]["dynamicModule"][0]["config"].update(header="x-session-id"), "x-session-id"),
        ("EnvoyProxy", "a2a-affinity-dynamic",
         lambda b: b["spec"]["dynamicModules"][0]["source"]["local"].update(path=f"/opt/a2a/{DYNAMIC_MODULE_SO}"),
         "no volume is mounted at /opt/a2a"),
        ("EnvoyProxy", "a2a-affinity-dynamic", eg_container(lambda c: c["volumeMounts"][0].pop("readOnly")), "readOnly"),
        ("EnvoyProxy", "a2a-affinity-dynamic",
         lambda b: eg_envoy_deployment(b)["initContainers"][0]["command"].remove(f"/module/{DYNAMIC_MODULE_SO}"),
         "must copy"),
        ("Gateway", "a2a-eg-dynamic", lambda b: b["spec"].pop("infrastructure"), "no EnvoyProxy"),
        ("BackendTrafficPolicy", "a2a-affinity-dynamic",
         lambda b: b["spec"]["targetRefs"][0].update(name="a2a-agent-eg"), "no BackendTrafficPolicy hashes"),
        # The scan bounded by the listener's limits.
        ("ClientTrafficPolicy", "a2a-affinity-dynamic", lambda b: b["spec"]["connection"].update(bufferLimit="64Ki"),
         "connection.bufferLimit; Envoy Gateway's default 32768) is 65536 bytes, below max_scan_bytes 262144"),
        ("ClientTrafficPolicy", "a2a-affinity-dynamic", lambda b: b["spec"].pop("http2"),
         "http2.initialStreamWindowSize; Envoy Gateway's default 65536) is 65536 bytes"),
        ("ClientTrafficPolicy", "a2a-affinity-dynamic", lambda b: b["spec"]["http2"].update(initialStreamWindowSize="1Ki"),
         "refuses http2.initialStreamWindowSize '1Ki' (a size from 65535 to 2147483647), applies none of the policy "
         "and answers 500"),
        ("ClientTrafficPolicy", "a2a-affinity-dynamic", lambda b: b["spec"]["targetRefs"][0].update(name="a2a-eg"),
         "is 32768 bytes, below max_scan_bytes"),
        ("ClientTrafficPolicy", "a2a-affinity-dynamic", lambda b: b["spec"]["targetRefs"][0].update(sectionName="other"),
         "is 32768 bytes, below max_scan_bytes"),
        ("EnvoyExtensionPolicy", "a2a-affinity-dynamic",
         lambda b: b["spec"]["dynamicModule"][0]["config"].update(max_scan_bytes=2 * 1024 * 1024),
         "is 1048576 bytes, below max_scan_bytes 2097152"),
    ]
    for kind, name, change, expected in eg_cases:
        errors = eg_dynamic_module_errors(mutated(docs, kind, change, name=name))
        assert any(expected in e for e in errors), (kind, expected, errors)
    # The policy may name the Gateway's listener instead.
    assert not eg_dynamic_module_errors(mutated(docs, "ClientTrafficPolicy",
                                                lambda b: b["spec"]["targetRefs"][0].update(sectionName="http")))
    # A second policy: on the whole Gateway, one of them applies; on its
    # listener, that one applies, whatever the shipped one says.
    client_policy = next(d for d in docs if d.kind == "ClientTrafficPolicy" and d.name == "a2a-affinity-dynamic")
    second = copy.deepcopy(client_policy.body)
    second["metadata"]["name"] = "a2a-other"
    errors = eg_dynamic_module_errors([*docs, Doc(client_policy.path, 99, second)])
    assert any("2 ClientTrafficPolicies target Gateway a2a-eg-dynamic" in e for e in errors), errors
    second["spec"]["targetRefs"][0]["sectionName"] = "http"
    second["spec"]["connection"]["bufferLimit"] = "64Ki"
    errors = eg_dynamic_module_errors([*docs, Doc(client_policy.path, 99, second)])
    assert errors and all("is 65536 bytes, below max_scan_bytes 262144" in e for e in errors), errors
    # An EnvoyPatchPolicy dropped into the folder.
    policy = next(d for d in docs if d.kind == "EnvoyExtensionPolicy" and d.name == "a2a-affinity-dynamic")
    errors = eg_dynamic_module_errors([*docs, Doc(policy.path, 99, patch_policy)])
    assert any("EnvoyPatchPolicy" in e for e in errors), errors

    istio_cases: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
        ("EnvoyFilter", "a2a-affinity-dynamic", istio_config({"headerName": "x"}), "unknown filter field"),
        ("EnvoyFilter", "a2a-affinity-dynamic", istio_config({"max_scan_bytes": "big"}), "max_scan_bytes"),
        ("EnvoyFilter", "a2a-affinity-dynamic", istio_filter(lambda t: t.update(filter_name="other")), "filter_name"),
        ("EnvoyFilter", "a2a-affinity-dynamic",
         istio_filter(lambda t: t["dynamic_module_config"]["module"]["local"].update(filename=f"/etc/{DYNAMIC_MODULE_SO}")),
         "no volume is mounted at /etc"),
        ("EnvoyFilter", "a2a-affinity-dynamic",
         lambda b: b["spec"]["configPatches"][0]["match"].update(context="SIDECAR_INBOUND"), "SIDECAR_OUTBOUND"),
        ("EnvoyFilter", "a2a-affinity-dynamic",
         lambda b: b["spec"]["configPatches"][0]["patch"].update(operation="INSERT_FIRST"), "before envoy.filters.http.router"),
        ("ConfigMap", "a2a-istio-dynamic-module",
         overlay_edit(lambda o: o["spec"]["template"].pop("metadata")), "proxyStatsMatcher"),
        ("ConfigMap", "a2a-istio-dynamic-module",
         overlay_edit(lambda o: istio_pod(o)["containers"][0].update(name="envoy")), "no volume is mounted"),
        ("ConfigMap", "a2a-istio-dynamic-module",
         overlay_edit(lambda o: istio_pod(o)["volumes"][0].update(name="other")), "which the pod does not have"),
        ("ConfigMap", "a2a-istio-dynamic-module", lambda b: b["data"].update(deploymnet="{}"), "istiod rejects"),
        ("Gateway", "a2a-istio-dynamic", lambda b: b["spec"].pop("infrastructure"), "parametersRef"),
    ]
    for kind, name, change, expected in istio_cases:
        errors = istio_dynamic_module_errors(mutated(docs, kind, change, name=name))
        assert any(expected in e for e in errors), (kind, expected, errors)

    # The Wasm checks leave the dynamic-module EnvoyFilter alone, and the
    # reference check follows the Gateways' parametersRef.
    assert not istio_errors(docs)
    errors = reference_errors(mutated(docs, "EnvoyProxy", lambda b: b["metadata"].update(name="renamed"),
                                      name="a2a-affinity-dynamic"))
    assert any("parametersRef EnvoyProxy a2a-affinity-dynamic" in e for e in errors), errors


# --- Envoy with the built module

# Envoy Gateway v1.9 ships Envoy 1.39.0; Istio 1.31's proxy is Envoy 1.39.
# The module loads in 1.38-1.40 (DYNAMIC_MODULE_VERSIONS;
# crates/dynamic-module/README.md).


def dynamic_module_so() -> Path:
    """The module scripts/build.sh produced (honouring CARGO_TARGET_DIR), or
    A2A_DYNAMIC_MODULE_SO; skips when there is none."""
    if os.environ.get("A2A_DYNAMIC_MODULE_SO"):
        module = Path(os.environ["A2A_DYNAMIC_MODULE_SO"]).resolve()
        if not module.is_file():
            pytest.skip(f"A2A_DYNAMIC_MODULE_SO={module} is no file")
        return module
    dirs = [Path(os.environ["CARGO_TARGET_DIR"])] if os.environ.get("CARGO_TARGET_DIR") else []
    dirs.append(REPO / "target")
    module = next((d / "release" / DYNAMIC_MODULE_SO for d in dirs if (d / "release" / DYNAMIC_MODULE_SO).is_file()), None)
    if module is None:
        pytest.skip(f"the dynamic module is not built (target/release/{DYNAMIC_MODULE_SO}): run scripts/build.sh")
    sources = [REPO / "Cargo.toml", REPO / "Cargo.lock", *sorted((REPO / "crates" / "dynamic-abi").rglob("*.rs")),
               *sorted((REPO / "crates" / "dynamic-module" / "src").rglob("*.rs")),
               *sorted((REPO / "crates" / "core" / "src").rglob("*.rs"))]
    newest = max((s.stat().st_mtime for s in sources if s.is_file()), default=0.0)
    if module.stat().st_mtime < newest:
        pytest.skip(f"{module} is older than the module's sources: run scripts/build.sh "
                    "(or set A2A_DYNAMIC_MODULE_SO to that file to use it anyway)")
    return module


def eg_dynamic_module_bootstrap(docs: list[Doc], module: Path) -> dict[str, Any]:
    """What Envoy Gateway v1.9 generates (internal/xds/translator/dynamicmodule.go):
    the filter disabled on the HCM and enabled on the route, the module loaded
    from the EnvoyProxy's Local path (here: the built file), `config` handed
    over as a JSON string; Maglev on the header from the BackendTrafficPolicy;
    the listener's buffer limit and HTTP/2 windows from the Gateway's
    ClientTrafficPolicy, else Envoy Gateway's (32 KiB; 64 KiB and 1 MiB)."""
    policy = next(d for d in find(docs, "EnvoyExtensionPolicy") if d.spec.get("dynamicModule"))
    dm = policy.spec["dynamicModule"][0]
    ref, gateways = policy_gateways(docs, policy)[0]
    proxy = envoy_proxy_for(docs, gateways[0])
    assert proxy is not None
    entry = next(e for e in proxy.spec["dynamicModules"] if e["name"] == dm["name"])
    name = eg_dynamic_module_filter_name(policy, 0)
    typed_config: dict[str, Any] = {
        "@type": DYNAMIC_MODULE_FILTER_TYPE,
        "dynamic_module_config": {"module": {"local": {"filename": str(module)}},
                                  "do_not_close": entry.get("doNotClose", False),
                                  "load_globally": entry.get("loadGlobally", False)},
        "filter_name": dm.get("filterName", ""),
        "terminal_filter": dm.get("terminalFilter", False),
    }
    if "config" in dm:
        typed_config["filter_config"] = {"@type": STRING_VALUE_TYPE,
                                         "value": json.dumps(dm["config"], separators=(",", ":"))}
    http_filter = {"name": name, "disabled": True, "typed_config": typed_config}
    btp = next(d for d in find(docs, "BackendTrafficPolicy")
               if any(r.get("name") == ref["name"] for r in d.spec.get("targetRefs") or []))
    ch = btp.spec["loadBalancer"]["consistentHash"]
    route = {
        "match": {"prefix": "/"},
        "route": {"cluster": "agents", "timeout": "0s",
                  "hash_policy": [{"header": {"header_name": h["name"]}} for h in ch["headers"]]},
        "typed_per_filter_config": {name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                                           "config": {}}},
    }
    lb = {"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": ch.get("tableSize", 65537)}}
    limits, problems = eg_client_limits(docs, gateways[0])
    assert not problems, problems
    http2 = {"max_concurrent_streams": limits["streams"], "initial_stream_window_size": limits["stream"],
             "initial_connection_window_size": limits["connection"]}
    return bootstrap(http_filter, route, lb, limits["buffer"], http2)


def istio_dynamic_module_bootstrap(docs: list[Doc], module: Path) -> dict[str, Any]:
    """The EnvoyFilter's inserted filter as is, loading the built file from
    where the pod has it; the DestinationRule's hash policy and Maglev table."""
    envoy_filter = next(d for d in find(docs, "EnvoyFilter") if dynamic_module_typed_configs(d))
    value = copy.deepcopy(next(p["patch"]["value"] for p in envoy_filter.spec["configPatches"]
                               if (p["patch"]["value"].get("typed_config") or {}).get("@type") == DYNAMIC_MODULE_FILTER_TYPE))
    value["typed_config"]["dynamic_module_config"]["module"]["local"]["filename"] = str(module)
    route, lb = istio_route_and_lb(docs)
    return bootstrap(value, route, lb, None)


DYNAMIC_MODULE_BOOTSTRAPS = {"envoy-gateway": eg_dynamic_module_bootstrap, "istio": istio_dynamic_module_bootstrap}


@pytest.mark.parametrize("version", sorted(DYNAMIC_MODULE_VERSIONS))
@pytest.mark.parametrize("gateway", sorted(DYNAMIC_MODULE_BOOTSTRAPS))
def test_dynamic_module_configuration_loads_in_envoy(docs: list[Doc], gateway: str, version: str,
                                                     tmp_path: Path) -> None:
    envoy = envoy_binary(version)
    if not envoy.is_file():
        pytest.skip(f"Envoy {version} is not installed at {envoy}")
    module = dynamic_module_so()
    config = DYNAMIC_MODULE_BOOTSTRAPS[gateway](docs, module)
    result = envoy_validate(envoy, config, tmp_path)
    assert result.returncode == 0, (
        f"Envoy {version} rejects the {gateway} dynamic module config with {module}:\n{result.stdout}{result.stderr}")

    # The module parses the configuration when Envoy loads it: an unknown
    # field is refused, with the module's own log line.
    typed = next(v for v in walk(config) if isinstance(v, dict) and v.get("@type") == DYNAMIC_MODULE_FILTER_TYPE)
    typed["filter_config"]["value"] = json.dumps({**json.loads(typed["filter_config"]["value"]), "headerName": "x"})
    result = envoy_validate(envoy, config, tmp_path)
    assert result.returncode != 0, f"Envoy {version} accepted an unknown filter field"
    assert "a2a_affinity: invalid plugin configuration" in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("version", ["1.36.4", "1.37.0"])
def test_envoy_before_1_38_cannot_load_the_dynamic_module(docs: list[Doc], tmp_path: Path, version: str) -> None:
    # What deploy/README.md says: the module needs Envoy 1.38 or later.
    # Envoy Gateway names the file (`module.local.filename`), a field these
    # releases do not have, so they refuse the config before loading anything
    # (tests/e2e/test_configs.py loads the module by name in them).
    envoy = envoy_binary(version)
    if not envoy.is_file():
        pytest.skip(f"Envoy {version} is not installed at {envoy}")
    result = envoy_validate(envoy, eg_dynamic_module_bootstrap(docs, dynamic_module_so()), tmp_path)
    assert result.returncode != 0, f"Envoy {version} accepted the dynamic module configuration"
    assert "DynamicModuleConfig" in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("gateway", sorted(DYNAMIC_MODULE_BOOTSTRAPS))
def test_dynamic_module_config_keeps_each_conversation_on_one_replica(
        docs: list[Doc], replicas: tuple[list[int], dict[str, str]], gateway: str, tmp_path: Path) -> None:
    envoy = envoy_binary()
    if not envoy.is_file():
        pytest.skip(f"Envoy 1.40 is not installed at {envoy}")
    module = dynamic_module_so()
    ports, replica_at = replicas
    proxy = Gateway(envoy, DYNAMIC_MODULE_BOOTSTRAPS[gateway](docs, module), ports, tmp_path, f"dm-{gateway}")
    try:
        # Istio keeps Envoy's 1 MiB listener buffer, and the shipped
        # ClientTrafficPolicy gives Envoy Gateway's the same: a contextId
        # after 100 KiB of text is found.
        first_text = "x" * LARGE_TEXT_BYTES
        landed: dict[str, set[str]] = {}
        seq = 0
        conversations = proxy.conversations([f"dm-ctx-{n}-{'ef' * n}" for n in range(24)])
        for context_id in conversations:
            for turn in range(2):
                seq += 1
                body = send_message(context_id, first_text if turn == 0 else f"turn {turn}", seq)
                status, report = proxy.post(body)
                assert status == 200 and report is not None, (status, proxy.log.read_text()[-2000:])
                assert report["context_ids"] == [context_id], report["context_ids"]
                assert report["body_sha256"] == hashlib.sha256(body).hexdigest(), "the body changed on the way"
                landed.setdefault(context_id, set()).add(report["replica"])
        assert landed == {c: {replica_at[host]} for c, host in conversations.items()}, landed

        seq += 1
        status, first = proxy.post(send_message(None, "hello", seq))
        assert status == 200 and first is not None and len(first["context_ids"]) == 1, first
        seq += 1
        status, follow_up = proxy.post(send_message(first["context_ids"][0], "and then", seq))
        assert status == 200 and follow_up is not None and follow_up["replica"] == first["replica"]

        stats = admin_get(proxy.admin_port, "/stats?filter=a2a_affinity")[1]
        for counter, at_least in {"context_found": 12, "minted": 1}.items():
            m = re.search(rf"^{DYNAMIC_MODULE_METRICS_NAMESPACE}\.a2a_affinity\.{counter}: (\d+)$", stats, re.M)
            assert m and int(m.group(1)) >= at_least, (counter, stats)
    finally:
        stop(proxy.proc)


@pytest.mark.parametrize("client_traffic_policy", ["shipped", "left out"])
def test_envoy_gateway_limits_bound_the_dynamic_modules_scan(
        docs: list[Doc], replicas: tuple[list[int], dict[str, str]], client_traffic_policy: str,
        tmp_path: Path) -> None:
    # The module reads up to the stream's buffer limit. With the shipped
    # ClientTrafficPolicy (1 MiB listener buffer, 512 KiB HTTP/2 stream
    # window) it finds a contextId after 20, 48 and 100 KiB of text over
    # HTTP/1.1 and HTTP/2. Left out, Envoy Gateway's 32 KiB buffer (an
    # HTTP/1.1 request's limit) and 64 KiB window (an HTTP/2 stream's) stop
    # the scan first: one after 20 KiB is still found, one after 48 KiB only
    # over HTTP/2, one after 100 KiB not at all, and a request whose
    # contextId is not found goes on to the agent unchanged, neither
    # answered 413 nor stalled (scan_limit).
    envoy = envoy_binary()
    if not envoy.is_file():
        pytest.skip(f"Envoy 1.40 is not installed at {envoy}")
    module = dynamic_module_so()
    shipped = client_traffic_policy == "shipped"
    if not shipped:
        docs = [d for d in docs if d.kind != "ClientTrafficPolicy"]
    ports, replica_at = replicas
    proxy = Gateway(envoy, eg_dynamic_module_bootstrap(docs, module), ports, tmp_path, "dm-eg-limits")
    try:
        sizes = [(protocol, kib) for protocol in ("HTTP/1.1", "HTTP/2") for kib in (20, 48, 100)]
        conversations = proxy.conversations([f"dm-limit-{n}-{'cd' * n}" for n in range(24)], count=len(sizes))
        cases = zip(conversations.items(), sizes)
        found = 0
        for seq, ((context_id, host), (protocol, kib)) in enumerate(cases, 1):
            body = send_message(context_id, "x" * (kib * 1024), seq)
            status, report = (proxy.post if protocol == "HTTP/1.1" else proxy.post_h2)(body)
            assert status == 200 and report is not None, (protocol, kib, status, proxy.log.read_text()[-2000:])
            assert (report["body_length"], report["body_sha256"]) == (
                len(body), hashlib.sha256(body).hexdigest()), "the body changed on the way"
            if shipped or kib == 20 or (protocol, kib) == ("HTTP/2", 48):
                assert report["context_ids"] == [context_id], (protocol, kib, report["context_ids"])
                assert report["replica"] == replica_at[host], (protocol, kib, report["replica"])
                found += 1
            else:
                assert report["context_ids"] == [], (protocol, kib, report["context_ids"])
        counters = proxy.counters()
        assert (counters.get("context_found", 0), counters.get("scan_limit", 0)) == (found, len(sizes) - found), counters
    finally:
        stop(proxy.proc)


@pytest.mark.parametrize("version", sorted(DYNAMIC_MODULE_VERSIONS))
def test_dynamic_module_loads_from_the_manifests_path_in_a_libc_only_root(
        docs: list[Doc], tmp_path: Path, version: str) -> None:
    """Envoy Gateway's default image is distroless: glibc and Envoy, no
    libgcc_s. In a root with only Envoy's own libraries, the module loads
    from the EnvoyProxy's Local path with the container's environment as
    the manifest sets it: it needs nothing Envoy does not (every Envoy that
    loads it; Envoy Gateway v1.9 ships 1.39.0)."""
    binary = envoy_executable(version)
    chroot = shutil.which("chroot")
    if os.geteuid() != 0 or chroot is None or shutil.which("ldd") is None or binary is None:
        pytest.skip(f"needs root, chroot, ldd and the Envoy {version} binary of its venv")
    module = dynamic_module_so()

    def libraries(elf: Path) -> dict[str, Path]:
        out = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=False).stdout
        return {m.group(1): Path(m.group(2)) for m in re.finditer(r"^\s*(\S+) => (/\S+)", out, re.M)} | {
            Path(m.group(1)).name: Path(m.group(1)) for m in re.finditer(r"^\s*(/\S+) \(0x", out, re.M)}

    assert LIBGCC not in libraries(module), f"{module} links {LIBGCC} (crates/dynamic-abi/build.rs)"
    proxy = next(p for p in find(docs, "EnvoyProxy") if p.spec.get("dynamicModules"))
    path = proxy.spec["dynamicModules"][0]["source"]["local"]["path"]
    _, container = eg_proxy_pod(proxy)
    env = {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}

    root = tmp_path / "root"
    for source, target in [(binary, Path("/usr/local/bin/envoy")), *[(p, p) for p in libraries(binary).values()],
                           (module, Path(path))]:
        dest = root / target.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source.resolve(), dest)
    (root / "tmp").mkdir(exist_ok=True)
    (root / "envoy.yaml").write_text(yaml.safe_dump(eg_dynamic_module_bootstrap(docs, Path(path))), encoding="utf-8")
    assert not any(LIBGCC in str(p) for p in root.rglob("*")), "the root has libgcc_s: the check would prove nothing"
    result = subprocess.run([chroot, str(root), "/usr/local/bin/envoy", "--mode", "validate", "-c", "/envoy.yaml",
                             "--log-level", "error"], env={"PATH": "/usr/local/bin", **env},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
