#!/usr/bin/env python3
"""Writes the release's container images as OCI image layouts on disk
(image-spec v1.1 "oci-layout" directories), without a container engine.

Called by scripts/release.sh; Python standard library only. Every byte is a
function of the inputs: tar entries are sorted, owned by 0:0 with empty user
and group names, stamped with SOURCE_DATE_EPOCH; the gzip header carries no
file name and that same time; JSON is written with a fixed key order. The
same inputs therefore give the same layer, config and manifest digests.

Images (each a single-layer image whose manifest the layout's index.json
names, tagged with the version):

  a2a-affinity-wasm            /plugin.wasm: the Wasm image "compat" variant
                               that Envoy Gateway (code.type: Image) and
                               istio-agent (oci://) unpack
  a2a-affinity-dynamic-module  /module/liba2a_affinity_dynamic.so, a static
                               busybox as /bin/cp for the init container
  a2a-affinity-ext-proc        /usr/local/bin/a2a-affinity-ext-proc with the
                               glibc runtime it links, user 65532

Usage: oci_image.py --dist DIR --version V --epoch SECONDS --wasm FILE
                    --dynamic-module FILE --busybox FILE
                    --ext-proc FILE --runtime-lib FILE [--runtime-lib FILE ...]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

LICENSE = "Apache-2.0"
NONROOT = 65532


class Entry:
    """One entry of a layer: a regular file (data), a directory or a symlink."""

    def __init__(self, path, *, data=None, mode=0o644, link=None, directory=False):
        self.path = path.strip("/")
        self.data = data
        self.mode = mode
        self.link = link
        self.directory = directory


def file_entry(path, source, mode):
    with open(source, "rb") as f:
        return Entry(path, data=f.read(), mode=mode)


def layer_tar(entries, epoch):
    """The uncompressed layer: parents first, every path once, sorted."""
    by_path = {}
    for e in entries:
        if e.path in by_path:
            raise ValueError(f"{e.path} twice in one layer")
        by_path[e.path] = e
        parent = os.path.dirname(e.path)
        while parent and parent not in by_path:
            by_path[parent] = Entry(parent, directory=True, mode=0o755)
            parent = os.path.dirname(parent)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(by_path):
            e = by_path[path]
            info = tarfile.TarInfo(path + "/" if e.directory else path)
            info.mtime = epoch
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = e.mode
            if e.directory:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = e.link
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def gzip_bytes(data, epoch):
    buf = io.BytesIO()
    # filename="" keeps the name out of the header; mtime is fixed.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=epoch) as gz:
        gz.write(data)
    return buf.getvalue()


def dumps(doc):
    return (json.dumps(doc, indent=2, ensure_ascii=True) + "\n").encode()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, root):
        if os.path.exists(root):
            shutil.rmtree(root)
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"))

    def blob(self, data, media_type):
        digest = sha256(data)
        with open(os.path.join(self.root, "blobs", "sha256", digest.split(":", 1)[1]), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def finish(self, manifest_descriptor):
        with open(os.path.join(self.root, "oci-layout"), "wb") as f:
            f.write(dumps({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_descriptor]}
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(dumps(index))


def write_image(root, *, name, version, epoch, platform, entries, config, description):
    """Writes one single-layer image; returns its manifest descriptor."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    tar = layer_tar(entries, epoch)
    layout = Layout(root)
    layer = layout.blob(gzip_bytes(tar, epoch), MEDIA_LAYER_GZIP)
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": description,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": LICENSE,
    }
    image_config = {
        "created": created,
        "architecture": platform["architecture"],
        "os": platform["os"],
        "config": dict(config, Labels=labels),
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
        "history": [{"created": created, "created_by": "scripts/release.sh (scripts/oci_image.py)"}],
    }
    config_descriptor = layout.blob(dumps(image_config), MEDIA_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_descriptor,
        "layers": [layer],
        "annotations": dict(labels, **{"org.opencontainers.image.created": created}),
    }
    descriptor = layout.blob(dumps(manifest), MEDIA_MANIFEST)
    descriptor["platform"] = dict(platform)
    descriptor["annotations"] = {"org.opencontainers.image.ref.name": version}
    layout.finish(descriptor)
    return descriptor


def build_all(args):
    images = {}
    oci = os.path.join(args.dist, "oci")
    os.makedirs(oci, exist_ok=True)
    linux = {"architecture": "amd64", "os": "linux"}

    # The Wasm image, "compat" variant: one tar+gzip layer whose plugin.wasm
    # the gateways' fetchers take (they look for that base name in the last
    # layer). The platform is the module's own.
    images["a2a-affinity-wasm"] = write_image(
        os.path.join(oci, "a2a-affinity-wasm"), name="a2a-affinity-wasm", version=args.version,
        epoch=args.epoch, platform={"architecture": "wasm", "os": "wasip1"},
        entries=[file_entry("plugin.wasm", args.wasm, 0o644)],
        config={},
        description="a2a-affinity proxy-wasm filter (plugin.wasm) for Envoy Gateway and Istio")

    # The dynamic module image of deploy/envoy-gateway/dynamic-module/Dockerfile:
    # the module under /module (it needs only glibc, which every Envoy image
    # has), cp for the init container.
    images["a2a-affinity-dynamic-module"] = write_image(
        os.path.join(oci, "a2a-affinity-dynamic-module"), name="a2a-affinity-dynamic-module",
        version=args.version, epoch=args.epoch, platform=linux,
        entries=[
            file_entry("bin/busybox", args.busybox, 0o755),
            Entry("bin/cp", link="busybox", mode=0o777),
            file_entry("module/liba2a_affinity_dynamic.so", args.dynamic_module, 0o755),
        ],
        config={"User": f"{NONROOT}:{NONROOT}", "Env": ["PATH=/bin"]},
        description="a2a-affinity Envoy dynamic module (/module) with cp for an init container")

    # The ext_proc server image of crates/ext-proc/Dockerfile: the binary, the
    # glibc runtime it links (from the build host, Debian 12), a non-root user.
    lib_dir = "lib/x86_64-linux-gnu"
    entries = [
        Entry("etc/passwd", data=b"root:x:0:0:root:/root:/sbin/nologin\n"
              b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
        Entry("etc/group", data=b"root:x:0:\nnonroot:x:65532:\n"),
        Entry("etc/nsswitch.conf", data=b"passwd: files\ngroup: files\nhosts: files dns\n"),
        Entry("home/nonroot", directory=True, mode=0o755),
        Entry("tmp", directory=True, mode=0o1777),
        file_entry("usr/local/bin/a2a-affinity-ext-proc", args.ext_proc, 0o755),
    ]
    for lib in sorted(set(args.runtime_lib)):
        base = os.path.basename(lib)
        entries.append(file_entry(f"{lib_dir}/{base}", lib, 0o755 if base.startswith("ld-") else 0o644))
        if base.startswith("ld-linux"):
            entries.append(Entry(f"lib64/{base}", link=f"../{lib_dir}/{base}", mode=0o777))
    images["a2a-affinity-ext-proc"] = write_image(
        os.path.join(oci, "a2a-affinity-ext-proc"), name="a2a-affinity-ext-proc",
        version=args.version, epoch=args.epoch, platform=linux, entries=entries,
        config={
            "User": f"{NONROOT}:{NONROOT}",
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "Entrypoint": ["/usr/local/bin/a2a-affinity-ext-proc"],
            "Cmd": ["--listen", "0.0.0.0:9000", "--metrics-listen", "0.0.0.0:9090"],
            "ExposedPorts": {"9000/tcp": {}, "9090/tcp": {}},
            "WorkingDir": "/home/nonroot",
        },
        description="a2a-affinity ext_proc gRPC server")
    return images


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dist", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--epoch", required=True, type=int)
    for name in ("wasm", "dynamic-module", "busybox", "ext-proc"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--runtime-lib", action="append", required=True)
    args = p.parse_args(argv)
    for name, descriptor in build_all(args).items():
        print(f"{name}:{args.version} {descriptor['digest']}")


if __name__ == "__main__":
    main(sys.argv[1:])
