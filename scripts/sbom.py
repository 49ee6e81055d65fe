#!/usr/bin/env python3
"""Writes the release's software bill of materials, CycloneDX 1.5 JSON, from
`cargo metadata` (offline, locked) and Cargo.lock. Python standard library
only; called by scripts/release.sh.

Components: the three shipped crates (the Wasm module, the dynamic module,
the ext_proc server) and every crate they depend on, followed through normal
and build dependencies (not dev ones) for the target each is built for
(wasm32-wasip1 for the module, x86_64-unknown-linux-gnu for the others), each
with its version, purl, licence expression, the sha256 Cargo.lock records
for registry crates, and the artifacts it goes into; plus the Debian packages
whose files the artifacts carry (--deb NAME=VERSION=ARTIFACT, the artifact
named as in dist/: a file, or oci/<image>). The document is a
function of its inputs: its time is SOURCE_DATE_EPOCH and its serial number
a UUID derived from its content.

Usage: sbom.py --version V --epoch SECONDS --out FILE [--deb NAME=VERSION=ARTIFACT ...]
"""

import argparse
import hashlib
import json
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Shipped package -> (platform it is built for, artifacts it becomes).
SHIPPED = {
    "a2a-affinity": ("wasm32-wasip1", ["a2a_affinity.wasm", "oci/a2a-affinity-wasm"]),
    "a2a-affinity-dynamic-module": ("x86_64-unknown-linux-gnu",
                                    ["liba2a_affinity_dynamic.so", "oci/a2a-affinity-dynamic-module"]),
    "a2a-affinity-ext-proc": ("x86_64-unknown-linux-gnu",
                              ["a2a-affinity-ext-proc", "oci/a2a-affinity-ext-proc"]),
}
SHIPPED_KINDS = {None, "build"}


def cargo_metadata(platform):
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline",
         "--filter-platform", platform],
        cwd=REPO, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def lock_checksums():
    lock = tomllib.loads((REPO / "Cargo.lock").read_text())
    return {(p["name"], p["version"]): p["checksum"] for p in lock.get("package", []) if "checksum" in p}


def purl(pkg):
    return f"pkg:cargo/{pkg['name']}@{pkg['version']}"


def walk(meta, root_name):
    """Package ids reachable from root_name through normal and build edges."""
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(p["id"] for p in meta["packages"] if p["name"] == root_name and p["source"] is None)
    seen, stack, edges = set(), [root], {}
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        deps = set()
        for dep in nodes[pid]["deps"]:
            if any(k["kind"] in SHIPPED_KINDS for k in dep["dep_kinds"]):
                deps.add(dep["pkg"])
                stack.append(dep["pkg"])
        edges[pid] = deps
    return {pid: packages[pid] for pid in seen}, edges


def component(pkg, checksums, artifacts, root):
    c = {
        "type": "application" if root else "library",
        "bom-ref": purl(pkg),
        "name": pkg["name"],
        "version": pkg["version"],
        "purl": purl(pkg),
    }
    if pkg.get("description"):
        c["description"] = " ".join(pkg["description"].split())
    if pkg.get("license"):
        c["licenses"] = [{"expression": pkg["license"]}]
    checksum = checksums.get((pkg["name"], pkg["version"]))
    if checksum:
        c["hashes"] = [{"alg": "SHA-256", "content": checksum}]
    refs = []
    if pkg.get("repository"):
        refs.append({"type": "vcs", "url": pkg["repository"]})
    if refs:
        c["externalReferences"] = refs
    c["properties"] = [{"name": "a2a-affinity:artifact", "value": a} for a in sorted(artifacts)]
    if pkg["source"] is None:
        c["properties"].append({"name": "a2a-affinity:source", "value": "this repository"})
    return c


def build(version, epoch, debs):
    checksums = lock_checksums()
    comps, deps, artifacts = {}, {}, {}
    for name, (platform, outs) in SHIPPED.items():
        packages, edges = walk(cargo_metadata(platform), name)
        for pid, pkg in packages.items():
            ref = purl(pkg)
            comps[ref] = (pkg, pkg["name"] == name)
            artifacts.setdefault(ref, set()).update(outs)
            deps.setdefault(ref, set()).update(purl(packages[d]) for d in edges[pid])
    components = [component(pkg, checksums, artifacts[ref], root)
                  for ref, (pkg, root) in sorted(comps.items())]
    artifacts_by_deb: dict[tuple[str, str], set[str]] = {}
    for deb in debs:
        name, ver, artifact = deb.split("=", 2)
        artifacts_by_deb.setdefault((name, ver), set()).add(artifact)
    for (name, ver), outs in sorted(artifacts_by_deb.items()):
        ref = f"pkg:deb/debian/{name}@{ver}?arch=amd64&distro=debian-12"
        components.append({
            "type": "library" if name.startswith("lib") else "application",
            "bom-ref": ref, "name": name, "version": ver, "purl": ref,
            "properties": [{"name": "a2a-affinity:artifact", "value": artifact} for artifact in sorted(outs)]
            + [{"name": "a2a-affinity:source", "value": "Debian 12 package (build host)"}],
        })
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
            "tools": {"components": [{"type": "application", "name": "scripts/sbom.py",
                                      "description": "cargo metadata --locked --offline"}]},
            "component": {"type": "application", "bom-ref": "a2a-affinity-release",
                          "name": "a2a-affinity", "version": version,
                          "licenses": [{"expression": "Apache-2.0"}]},
        },
        "components": components,
        "dependencies": [{"ref": "a2a-affinity-release",
                          "dependsOn": sorted(purl(comps_pkg) for comps_pkg, root in comps.values() if root)}]
        + [{"ref": ref, "dependsOn": sorted(d)} for ref, d in sorted(deps.items())],
    }
    body = json.dumps(doc, sort_keys=True).encode()
    serial = uuid.uuid5(uuid.NAMESPACE_URL, "a2a-affinity-sbom:" + hashlib.sha256(body).hexdigest())
    return dict({"bomFormat": doc.pop("bomFormat"), "specVersion": doc.pop("specVersion"),
                 "serialNumber": f"urn:uuid:{serial}"}, **doc)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--version", required=True)
    p.add_argument("--epoch", required=True, type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--deb", action="append", default=[])
    args = p.parse_args(argv)
    doc = build(args.version, args.epoch, args.deb)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{args.out}: {len(doc['components'])} components")


if __name__ == "__main__":
    main(sys.argv[1:])
