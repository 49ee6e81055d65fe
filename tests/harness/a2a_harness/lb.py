"""Where Envoy's consistent hashing puts a key: the `route` command of
crates/envoy-lb, which reproduces Envoy's ring hash and Maglev host choice,
run with an Envoy cluster's own load-balancing settings."""

import json
import subprocess

from .paths import REPO


def lb_args(cluster):
    """envoy-lb's `--lb ...` arguments for an Envoy cluster (a bootstrap's
    `static_resources.clusters` entry) of policy RING_HASH or MAGLEV."""
    if cluster["lb_policy"] == "RING_HASH":
        ring = cluster.get("ring_hash_lb_config", {})
        return ["--lb", "ring", "--min-ring-size", str(ring.get("minimum_ring_size", 1024)),
                "--max-ring-size", str(ring.get("maximum_ring_size", 8388608)),
                "--hash-function", {"XX_HASH": "xx", "MURMUR_HASH_2": "murmur"}[
                    ring.get("hash_function", "XX_HASH")]]
    if cluster["lb_policy"] == "MAGLEV":
        return ["--lb", "maglev", "--table-size",
                str(cluster.get("maglev_lb_config", {}).get("table_size", 65537))]
    raise ValueError(f"no consistent hashing in lb_policy {cluster['lb_policy']!r}")


def envoy_lb_route(*args, keys):
    """`envoy-lb route --json ARGS -- KEYS` (built from crates/envoy-lb): the
    host each key lands on."""
    out = subprocess.run(
        ["cargo", "run", "-q", "-p", "envoy-lb", "--", "route", "--json", *args, "--", *keys],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"envoy-lb route failed ({out.returncode}): {out.stderr[-2000:]}")
    return {row["key"]: row["host"] for row in json.loads(out.stdout)}


def predict_hosts(cluster, hosts, keys):
    """The host ("address:port", one of `hosts`) that Envoy, balancing over
    `hosts` with `cluster`'s settings, picks for each key."""
    return envoy_lb_route(*lb_args(cluster), "--hosts", ",".join(hosts), keys=keys)
