#!/usr/bin/env python3
"""Extract the validation schemas of upstream CRDs into deploy/schemas/.

Usage: scripts/vendor-crds.py /path/to/crds [--out DIR]

/path/to/crds holds upstream CustomResourceDefinition files (*.yaml, any
depth) and a README.md that records where they came from (see
deploy/schemas/README.md for the format read here). For every CRD the script
writes <subdir>/<file stem>.json under the output directory (default:
deploy/schemas/ of this repository) with the CRD's name, group, kind, names,
scope and, for each served version, its openAPIV3Schema without the
`description` annotations. It also writes sources.json: per extracted file the
upstream project, release, repository, commit, upstream path and the sha256 of
the source file and of the extracted file.

The output is deterministic (sorted keys, fixed layout): running the script
twice on the same input gives identical bytes. Files listed in a previous
sources.json that are no longer produced are removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "deploy" / "schemas"
MANIFEST = "sources.json"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Keywords whose value is a map of names to schemas.
SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
# Keywords whose value is a schema (or, for items, possibly a list of them).
SCHEMA_VALUES = ("items", "additionalProperties", "additionalItems", "not")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
GATEWAY_API_CHANNEL = "gateway.networking.k8s.io/channel"
GATEWAY_API_BUNDLE = "gateway.networking.k8s.io/bundle-version"


def fail(message: str) -> None:
    sys.exit(f"vendor-crds: {message}")


def strip_descriptions(schema: Any) -> Any:
    """Drop the `description` keyword from a schema and all its subschemas.

    Only schema keywords are walked: a field that is itself called
    `description` (a key of `properties`, as in GatewayClass.spec) is kept,
    and values such as `default`, `enum` or `example` are copied unchanged."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
        elif key in SCHEMA_VALUES and isinstance(value, list):
            out[key] = [strip_descriptions(sub) for sub in value]
        elif key in SCHEMA_VALUES:
            out[key] = strip_descriptions(value)
        elif key in SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strip_descriptions(sub) for sub in value]
        else:
            out[key] = value
    return out


def extract(crd: dict[str, Any]) -> dict[str, Any]:
    spec = crd["spec"]
    versions = []
    for version in spec["versions"]:
        if not version.get("served", False):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            fail(f"{crd['metadata']['name']} {version['name']}: no openAPIV3Schema")
        versions.append({
            "name": version["name"],
            "storage": bool(version.get("storage", False)),
            "openAPIV3Schema": strip_descriptions(schema),
        })
    return {
        "name": crd["metadata"]["name"],
        "group": spec["group"],
        "kind": spec["names"]["kind"],
        "names": spec["names"],
        "scope": spec.get("scope"),
        "versions": versions,
    }


# --------------------------------------------------------------------------
# Provenance, read from the source directory's README.md


def cells(line: str) -> list[str]:
    return [c.strip().strip("`") for c in line.strip().strip("|").split("|")]


def read_provenance(readme: Path) -> dict[str, dict[str, str]]:
    """Source file (relative path) -> provenance fields.

    Expected README.md layout: one `## <subdir>/ — <project> **<release>**`
    section per subdirectory. The section text names "Repository `owner/name`",
    "tag `<tag>`" and "commit `<40 hex digits>`", and holds a table whose
    first four columns are: file, upstream path (or "upstream document", a
    document of the single upstream file the text names as "file `<path>`"),
    kind (versions), sha256[:16]."""
    if not readme.is_file():
        fail(f"{readme} is missing: it must record the upstream project, release and path of each file")
    text = readme.read_text(encoding="utf-8")
    heading = re.compile(r"^## (\S+)/ — (.+?) \*\*(.+?)\*\*\s*$", re.M)
    found: dict[str, dict[str, str]] = {}
    matches = list(heading.finditer(text))
    for i, m in enumerate(matches):
        subdir, project, release = m.group(1), m.group(2).strip(), m.group(3).strip()
        body = text[m.end(): matches[i + 1].start() if i + 1 < len(matches) else len(text)]
        repo = re.search(r"Repository `([^`]+)`", body)
        tag = re.search(r"tag `([^`]+)`", body)
        commit = re.search(r"commit\s+`([0-9a-f]{40})`", body)
        single_file = re.search(r"\bfile `([^`]+)`", body)
        header: list[str] | None = None
        for line in body.splitlines():
            if not line.startswith("|"):
                header = None if not line.strip() else header
                continue
            row = cells(line)
            if row[0] == "file":
                header = row
                continue
            if header is None or set(row[0]) <= {"-", ":"}:
                continue
            entry = {
                "project": project,
                "release": release,
                "repository": repo.group(1) if repo else "",
                "tag": tag.group(1) if tag else "",
                "commit": commit.group(1) if commit else "",
                "sha256_prefix": row[3],
            }
            if header[1] == "upstream document":
                if not single_file:
                    fail(f"{readme}: section {subdir}/ lists documents but names no upstream file")
                entry["upstream_path"] = single_file.group(1)
                entry["upstream_document"] = row[1]
            else:
                entry["upstream_path"] = row[1]
            found[f"{subdir}/{row[0]}"] = entry
    return found


# --------------------------------------------------------------------------


def dump(value: Any) -> bytes:
    """Compact JSON, one value per line (small, yet diffs stay readable)."""
    text = json.dumps(value, sort_keys=True, indent=0, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="directory of upstream CRD files with a README.md")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = parser.parse_args()
    source: Path = args.source
    out: Path = args.out
    if not source.is_dir():
        fail(f"{source} is not a directory")
    provenance = read_provenance(source / "README.md")

    entries = []
    outputs: dict[str, bytes] = {}
    for path in sorted(source.rglob("*.yaml")):
        rel = path.relative_to(source).as_posix()
        raw = path.read_bytes()
        try:
            docs = [d for d in yaml.load_all(raw, Loader=LOADER) if d is not None]
        except yaml.YAMLError as err:
            fail(f"{rel}: not valid YAML: {err}")
        crds = [d for d in docs if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
        if not crds:
            continue
        if len(docs) != 1:
            fail(f"{rel}: expected one CustomResourceDefinition document, found {len(docs)} documents")
        crd = crds[0]
        info = provenance.get(rel)
        if info is None:
            fail(f"{rel}: not listed in {source / 'README.md'}")
        digest = hashlib.sha256(raw).hexdigest()
        if not digest.startswith(info["sha256_prefix"]):
            fail(f"{rel}: sha256 {digest[:16]} differs from the README's {info['sha256_prefix']}")
        target = str(Path(rel).with_suffix(".json").as_posix())
        data = dump(extract(crd))
        outputs[target] = data
        annotations = crd["metadata"].get("annotations") or {}
        entry = {
            "file": target,
            "sha256": hashlib.sha256(data).hexdigest(),
            "group": crd["spec"]["group"],
            "kind": crd["spec"]["names"]["kind"],
            "versions": [v["name"] for v in crd["spec"]["versions"] if v.get("served", False)],
            "project": info["project"],
            "release": info["release"],
            "repository": info["repository"],
            "tag": info["tag"],
            "commit": info["commit"],
            "upstream_path": info["upstream_path"],
            "source_file": rel,
            "source_sha256": digest,
        }
        if "upstream_document" in info:
            entry["upstream_document"] = info["upstream_document"]
        if GATEWAY_API_CHANNEL in annotations:
            entry["channel"] = annotations[GATEWAY_API_CHANNEL]
            entry["bundle_version"] = annotations.get(GATEWAY_API_BUNDLE, "")
        entries.append(entry)
    if not entries:
        fail(f"no CustomResourceDefinition under {source}")

    # Remove what a previous run wrote and this one does not.
    old_manifest = out / MANIFEST
    if old_manifest.is_file():
        for old in json.loads(old_manifest.read_text(encoding="utf-8")).get("files", []):
            if old["file"] not in outputs:
                (out / old["file"]).unlink(missing_ok=True)
    for target, data in outputs.items():
        dest = out / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    manifest = {
        "generated_by": "scripts/vendor-crds.py",
        "content": "per CRD: name, group, kind, names, scope and the openAPIV3Schema of each served "
                   "version, with every description removed",
        "files": entries,
    }
    old_manifest.parent.mkdir(parents=True, exist_ok=True)
    old_manifest.write_bytes(dump(manifest))
    total = sum(len(d) for d in outputs.values())
    print(f"wrote {len(outputs)} schema files ({total} bytes) and {MANIFEST} to {out}")


if __name__ == "__main__":
    main()
