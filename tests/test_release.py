"""The release (scripts/release.sh, dist/): every file checksummed, the three
OCI image layouts read back byte by byte with a reader of their own (not the
writer's code), the images agreeing with their Dockerfiles, and the artifacts
taken out of the images loaded by Envoy 1.40 and routing conversations by
contextId (the upstream replicas report what they received). The images' file
systems are unpacked into a directory and run with chroot as the image's user,
as a container runtime would (needs root, as scripts/test.sh runs).

dist/ comes from `scripts/release.sh` (scripts/test.sh runs it with
--check-reproducible before the tests); $A2A_RELEASE_DIST points elsewhere.
The writer's determinism is checked here too: the layout writer and the SBOM
run twice on the same input give the same bytes."""

from __future__ import annotations

import calendar
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from a2a_harness import Envoy, free_port, load_config, rewrite_config, stop_process, to_shell, wait_until

REPO = Path(__file__).resolve().parent.parent
DIST = Path(os.environ.get("A2A_RELEASE_DIST", REPO / "dist"))
IMAGES = ("a2a-affinity-wasm", "a2a-affinity-dynamic-module", "a2a-affinity-ext-proc")
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
# The only layer type the gateways' "compat" Wasm image fetcher accepts for
# an OCI manifest (Istio pkg/wasm, Envoy Gateway internal/wasm).
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ARTIFACTS = ("a2a_affinity.wasm", "liba2a_affinity_dynamic.so", "a2a-affinity-ext-proc", "sbom.cdx.json")
DYNAMIC_DOCKERFILE = REPO / "deploy/envoy-gateway/dynamic-module/Dockerfile"
EXT_PROC_DOCKERFILE = REPO / "crates/ext-proc/Dockerfile"
REPLICAS = ("replica-1", "replica-2", "replica-3")
PLUGIN = {"header": "x-context-id", "mint_context_id": True, "learn_tasks": True}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cargo_version() -> str:
    out = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
                         cwd=REPO, check=True, capture_output=True, text=True).stdout
    return next(p["version"] for p in json.loads(out)["packages"] if p["name"] == "a2a-affinity")


@pytest.fixture(scope="module")
def dist() -> Path:
    if not (DIST / "SHA256SUMS").is_file():
        pytest.fail(f"{DIST} has no release: run scripts/release.sh "
                    "(scripts/test.sh runs it before the tests)", pytrace=False)
    return DIST


# --------------------------------------------------------------------------
# An OCI image layout reader (image-spec v1.1), independent of the writer


class Image:
    """One single-manifest image layout, every blob checked on the way in."""

    def __init__(self, root: Path):
        self.root = root
        self.problems: list[str] = []
        self.read_blobs: set[str] = set()
        layout = json.loads((root / "oci-layout").read_bytes())
        if layout != {"imageLayoutVersion": "1.0.0"}:
            self.problems.append(f"oci-layout is {layout}")
        self.index = json.loads((root / "index.json").read_bytes())
        if self.index.get("schemaVersion") != 2 or self.index.get("mediaType") != MEDIA_INDEX:
            self.problems.append(f"index.json: schemaVersion/mediaType {self.index.get('schemaVersion')} "
                                 f"{self.index.get('mediaType')}")
        manifests = self.index.get("manifests", [])
        if len(manifests) != 1:
            raise AssertionError(f"{root}: index.json names {len(manifests)} manifests, not one")
        self.descriptor = manifests[0]
        self.manifest = json.loads(self.blob(self.descriptor, MEDIA_MANIFEST))
        if self.manifest.get("schemaVersion") != 2 or self.manifest.get("mediaType") != MEDIA_MANIFEST:
            self.problems.append("manifest: schemaVersion must be 2 and mediaType the OCI manifest's")
        self.config = json.loads(self.blob(self.manifest["config"], MEDIA_CONFIG))
        self.layers = [self.blob(layer, MEDIA_LAYER) for layer in self.manifest["layers"]]
        self.diff_ids = ["sha256:" + sha256_hex(gzip.decompress(layer)) for layer in self.layers]
        if self.config.get("rootfs") != {"type": "layers", "diff_ids": self.diff_ids}:
            self.problems.append(f"config rootfs {self.config.get('rootfs')} is not the layers' "
                                 f"uncompressed digests {self.diff_ids}")
        on_disk = {p.name for p in (root / "blobs/sha256").iterdir()}
        if on_disk != self.read_blobs:
            self.problems.append(f"blobs no descriptor names: {sorted(on_disk - self.read_blobs)}")

    def blob(self, descriptor: dict[str, Any], media_type: str) -> bytes:
        digest = descriptor.get("digest", "")
        m = re.fullmatch(r"sha256:([0-9a-f]{64})", digest)
        if not m:
            raise AssertionError(f"{self.root}: bad digest {digest!r}")
        data = (self.root / "blobs/sha256" / m.group(1)).read_bytes()
        self.read_blobs.add(m.group(1))
        if sha256_hex(data) != m.group(1):
            self.problems.append(f"blob {digest}: content has sha256 {sha256_hex(data)}")
        if descriptor.get("size") != len(data):
            self.problems.append(f"blob {digest}: descriptor size {descriptor.get('size')}, file {len(data)} bytes")
        if descriptor.get("mediaType") != media_type:
            self.problems.append(f"blob {digest}: mediaType {descriptor.get('mediaType')!r}, expected {media_type}")
        return data

    @property
    def manifest_hex(self) -> str:
        return self.descriptor["digest"].split(":", 1)[1]

    def members(self) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        out = []
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(self.layers[-1]))) as tar:
            for info in tar.getmembers():
                f = tar.extractfile(info) if info.isfile() else None
                out.append((info, f.read() if f else None))
        return out

    def files(self) -> dict[str, tarfile.TarInfo | bytes]:
        """Path -> bytes for files, the TarInfo for everything else."""
        return {info.name.rstrip("/"): (data if data is not None else info) for info, data in self.members()}

    def unpack(self, dest: Path) -> Path:
        """The layer as a root file system, like a container runtime's."""
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(self.layers[-1]))) as tar:
            tar.extractall(dest, filter="fully_trusted")
        dest.chmod(0o755)  # the image's "/", which its user must traverse
        return dest


@pytest.fixture(scope="module")
def images(dist: Path) -> dict[str, Image]:
    return {name: Image(dist / "oci" / name) for name in IMAGES}


# --------------------------------------------------------------------------
# Checksums, version, layouts


def test_sha256sums_cover_every_file_and_verify(dist: Path) -> None:
    lines = (dist / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ", 1)
        listed[name] = digest
    on_disk = {str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(listed) == on_disk
    assert [line.split("  ", 1)[1] for line in lines] == sorted(listed), "SHA256SUMS is not sorted"
    assert set(ARTIFACTS) <= set(listed)
    # As a user checks a download.
    result = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"],
                            cwd=dist, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_are_tagged_with_the_cargo_version_and_read_back(images: dict[str, Image]) -> None:
    version = cargo_version()
    for name, image in images.items():
        assert not image.problems, f"{name}: " + "; ".join(image.problems)
        assert image.descriptor["annotations"] == {"org.opencontainers.image.ref.name": version}, name
        assert len(image.layers) == 1, name
        assert image.manifest["annotations"]["org.opencontainers.image.version"] == version, name
        assert image.config["config"]["Labels"]["org.opencontainers.image.version"] == version, name
        assert image.descriptor["platform"] == {"architecture": image.config["architecture"],
                                                "os": image.config["os"]}, name


def test_layers_are_deterministic_tar_gzip(images: dict[str, Image]) -> None:
    for name, image in images.items():
        created = image.config["created"]
        epoch = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))
        layer = image.layers[-1]
        flags, mtime = layer[3], int.from_bytes(layer[4:8], "little")
        assert layer[:3] == b"\x1f\x8b\x08" and flags == 0, f"{name}: gzip header flags {flags} (a file name?)"
        assert mtime == epoch, f"{name}: gzip mtime {mtime}, image created {epoch}"
        names = []
        for info, _ in image.members():
            names.append(info.name.rstrip("/"))
            assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", ""), f"{name}: {info.name} owner"
            assert info.mtime == epoch, f"{name}: {info.name} mtime {info.mtime}"
            assert not info.name.startswith(("/", "./")) and ".." not in info.name.split("/"), info.name
        assert names == sorted(names) and len(names) == len(set(names)), f"{name}: entries {names}"
        for n in names:  # every parent directory is its own entry, before its children
            parent = os.path.dirname(n)
            assert not parent or names.index(parent) < names.index(n), f"{name}: {n} before {parent}"


def test_wasm_image_is_what_the_gateways_fetch(dist: Path, images: dict[str, Image]) -> None:
    """The "compat" variant as Envoy Gateway and istio-agent read it: the last
    layer, of the OCI tar+gzip type, holds a file whose base name is
    plugin.wasm; its bytes are the module."""
    image = images["a2a-affinity-wasm"]
    assert image.manifest["layers"][-1]["mediaType"] == MEDIA_LAYER
    plugin = [data for info, data in image.members() if os.path.basename(info.name) == "plugin.wasm"]
    assert len(plugin) == 1
    module = (dist / "a2a_affinity.wasm").read_bytes()
    assert plugin[0] == module
    assert module[:4] == b"\x00asm"
    assert (image.config["os"], image.config["architecture"]) == ("wasip1", "wasm")


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """The instructions of the last stage, as (KEYWORD, arguments)."""
    out: list[tuple[str, str]] = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip() or line.startswith((" ", "\t")):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "FROM":
            out = []
        out.append((keyword, rest.strip()))
    return out


def test_dynamic_module_image_agrees_with_its_dockerfile(dist: Path, images: dict[str, Image]) -> None:
    image = images["a2a-affinity-dynamic-module"]
    files = image.files()
    assert files["module/liba2a_affinity_dynamic.so"] == (dist / "liba2a_affinity_dynamic.so").read_bytes()
    # The module needs glibc only (its unwinder is linked in): nothing beside it.
    assert "module/libgcc_s.so.1" not in files
    cp = files["bin/cp"]
    assert isinstance(cp, tarfile.TarInfo) and cp.issym() and cp.linkname == "busybox"
    assert files["bin/busybox"][:4] == b"\x7fELF"
    steps = dockerfile_instructions(DYNAMIC_DOCKERFILE)
    assert steps[0] == ("FROM", "scratch")
    copied = {args.split()[-1].lstrip("/") for kw, args in steps if kw == "COPY"}
    linked = {json.loads(args)[-1].lstrip("/") for kw, args in steps if kw == "RUN" and '"ln"' in args}
    assert copied | linked | {"bin", "module"} == set(files)
    config = image.config["config"]
    assert ("USER", config["User"]) in steps
    assert [f"ENV {e}" for e in config["Env"]] == [f"ENV {a}" for kw, a in steps if kw == "ENV"]
    # What the init containers in deploy/ run, from the image's PATH.
    for manifest in ("deploy/envoy-gateway/dynamic-module/envoyproxy.yaml",
                     "deploy/istio/dynamic-module/gateway.yaml"):
        text = (REPO / manifest).read_text()
        assert "REGISTRY/a2a-affinity-dynamic-module:" + cargo_version() in text, manifest


def test_ext_proc_image_agrees_with_its_dockerfile(dist: Path, images: dict[str, Image]) -> None:
    image = images["a2a-affinity-ext-proc"]
    files = image.files()
    binary = "usr/local/bin/a2a-affinity-ext-proc"
    assert files[binary] == (dist / "a2a-affinity-ext-proc").read_bytes()
    steps = dict(dockerfile_instructions(EXT_PROC_DOCKERFILE))
    config = image.config["config"]
    assert steps["COPY"].split()[-1] == "/" + binary
    assert json.loads(steps["ENTRYPOINT"]) == config["Entrypoint"]
    assert json.loads(steps["CMD"]) == config["Cmd"]
    assert steps["USER"] == config["User"] == "65532:65532"
    assert steps["WORKDIR"] == config["WorkingDir"]
    assert {f"{p}/tcp" for p in steps["EXPOSE"].split()} == set(config["ExposedPorts"])
    assert steps["FROM"].endswith(":nonroot")
    assert "nonroot:x:65532:65532:" in files["etc/passwd"].decode()
    server = yaml.safe_load_all((REPO / "deploy/kgateway/ext-proc/server.yaml").read_text())
    images_used = [c["image"] for d in server if d and d.get("kind") == "Deployment"
                   for c in d["spec"]["template"]["spec"]["containers"]]
    assert images_used == ["REGISTRY/a2a-affinity-ext-proc:" + cargo_version()]


def test_deploy_points_at_the_released_image_names() -> None:
    """Every image reference in deploy/ to one of ours is REGISTRY/<name>:<the
    Cargo version>, the tag the layouts carry; the Wasm manifests pull the
    module image."""
    version = cargo_version()
    refs = []
    for path in sorted((REPO / "deploy").rglob("*.yaml")):
        for m in re.finditer(r"(?:oci://)?[\w.\-/]*(a2a-affinity-[a-z\-]+):([\w.\-]+)", path.read_text()):
            if m.group(1) in IMAGES:
                refs.append((path.relative_to(REPO).as_posix(), m.group(0)))
    bad = [r for r in refs if r[1].removeprefix("oci://") != f"REGISTRY/{r[1].split('/')[-1].split(':')[0]}:{version}"]
    assert refs and not bad, bad
    eg = yaml.safe_load((REPO / "deploy/envoy-gateway/envoyextensionpolicy.yaml").read_text())
    code = eg["spec"]["wasm"][0]["code"]
    assert code["type"] == "Image" and code["image"]["url"] == f"REGISTRY/a2a-affinity-wasm:{version}"
    istio = (REPO / "deploy/istio/envoyfilter.yaml").read_text()
    assert f"uri: oci://REGISTRY/a2a-affinity-wasm:{version}" in istio


# --------------------------------------------------------------------------
# Running what the images hold


def in_image(rootfs: Path, config: dict[str, Any]):
    """preexec_fn: enter the unpacked image as its runtime would (chroot,
    working directory, user)."""
    uid, gid = (int(x) for x in config["User"].split(":"))

    def enter() -> None:
        os.chroot(rootfs)
        os.chdir(config.get("WorkingDir") or "/")
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return enter


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot into the unpacked image needs root")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    workdir = tmp_path_factory.mktemp("upstreams")
    ports = {name: free_port() for name in REPLICAS}
    log = workdir / "upstreams.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "envoy/sandbox/upstream.py"),
                                 *[f"--replica={n}=127.0.0.1:{p}" for n, p in ports.items()]],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "ready" in log.read_text().splitlines(), 30, "upstream replicas", proc, log)
        yield ports
    finally:
        stop_process(proc)


def envoy_config(replicas: dict[str, int], module: Path) -> dict[str, Any]:
    return rewrite_config(load_config("envoy/envoy.yaml"), listen_port=free_port(), admin_port=free_port(),
                          upstream_ports=list(replicas.values()), module=module, plugin=PLUGIN)


def post(port: int, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def message(seq: int, context_id: str | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "user", "messageId": f"m-{seq}",
                           "parts": [{"kind": "text", "text": f"turn {seq} " + "x" * 2000}]}
    if context_id is not None:
        msg["contextId"] = context_id
    return {"jsonrpc": "2.0", "id": seq, "method": "message/send", "params": {"message": msg}}


def check_routing(envoy: Envoy, replicas: dict[str, int]) -> None:
    """Four conversations of three turns: each turn reaches the upstream with
    its contextId as x-context-id and the body unchanged, every turn of a
    conversation on one replica; a first turn without a contextId gets one
    minted, and its follow-up lands beside it."""
    by_port = {p: n for n, p in replicas.items()}
    placed: dict[str, set[str]] = {}
    for c in range(4):
        ctx = f"release-ctx-{c}"
        for turn in range(3):
            body = message(c * 10 + turn, ctx)
            report = post(envoy.port, body)
            assert report["context_ids"] == [ctx], report
            assert report["body_sha256"] == sha256_hex(json.dumps(body).encode()), "the body changed on the way"
            placed.setdefault(ctx, set()).add(report["replica"])
    assert all(len(r) == 1 for r in placed.values()), placed
    assert set().union(*placed.values()) <= set(by_port.values())
    first = post(envoy.port, message(100, None))
    minted = first["context_ids"]
    assert len(minted) == 1 and uuid.UUID(minted[0]), first
    follow = post(envoy.port, message(101, minted[0]))
    assert follow["context_ids"] == minted and follow["replica"] == first["replica"]


@pytest.mark.skipif(not (REPO / ".venv/bin/envoy").exists(), reason="Envoy 1.40 is missing: run scripts/setup.sh")
def test_envoy_loads_the_wasm_module_from_the_image(images: dict[str, Image], replicas: dict[str, int],
                                                    tmp_path: Path) -> None:
    image = images["a2a-affinity-wasm"]
    module = tmp_path / "from-image.wasm"
    module.write_bytes(image.files()["plugin.wasm"])
    with Envoy(envoy_config(replicas, module), workdir=tmp_path, name="envoy-wasm-image",
               shell="wasm", concurrency=1) as envoy:
        before = envoy.stats()
        check_routing(envoy, replicas)
        after = envoy.stats()
        dump = envoy.admin("/config_dump")
    assert after.get("context_found", 0) - before.get("context_found", 0) == 13, after
    assert after.get("minted", 0) - before.get("minted", 0) == 1, after
    assert json.dumps(str(module)) in dump, "Envoy did not load the module taken from the image"


@needs_root
@pytest.mark.skipif(not (REPO / ".venv/bin/envoy").exists(), reason="Envoy 1.40 is missing: run scripts/setup.sh")
def test_envoy_loads_the_dynamic_module_the_init_container_copies(images: dict[str, Image], replicas: dict[str, int],
                                                                  tmp_path: Path, monkeypatch) -> None:
    """The image's own cp, run as its user, copies what the init containers
    in deploy/ copy into an emptyDir stand-in; Envoy loads the copy."""
    image = images["a2a-affinity-dynamic-module"]
    rootfs = image.unpack(tmp_path / "rootfs")
    volume = rootfs / "var/lib/a2a-affinity"
    volume.mkdir(parents=True)
    volume.chmod(0o777)  # an emptyDir is writable by anyone
    init = yaml.safe_load((REPO / "deploy/envoy-gateway/dynamic-module/envoyproxy.yaml").read_text())
    container = init["spec"]["provider"]["kubernetes"]["envoyDeployment"]["initContainers"][0]
    config = image.config["config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    result = subprocess.run(container["command"], preexec_fn=in_image(rootfs, config), env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"{shlex.join(container['command'])}: {result.stderr}"
    copied = sorted(p.name for p in volume.iterdir())
    assert copied == ["liba2a_affinity_dynamic.so"]
    assert all(p.stat().st_uid == 65532 for p in volume.iterdir())
    cfg, _ = to_shell(envoy_config(replicas, tmp_path / "unused.wasm"), "dynamic-module")
    # Where the manifests point Envoy.
    monkeypatch.setenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", str(volume))
    with Envoy(cfg, workdir=tmp_path, name="envoy-dynamic-image", shell="wasm", concurrency=1) as envoy:
        check_routing(envoy, replicas)
        maps = Path(f"/proc/{envoy.pid}/maps").read_text() if envoy.pid else ""
    assert str(volume / "liba2a_affinity_dynamic.so") in maps, "Envoy did not map the copied module"


@needs_root
@pytest.mark.skipif(not (REPO / ".venv/bin/envoy").exists(), reason="Envoy 1.40 is missing: run scripts/setup.sh")
def test_ext_proc_image_serves_envoy_as_its_user(images: dict[str, Image], replicas: dict[str, int],
                                                 tmp_path: Path) -> None:
    """The server image's entrypoint and arguments, in its own root with only
    its own libraries, as uid 65532; Envoy routes through it."""
    image = images["a2a-affinity-ext-proc"]
    rootfs = image.unpack(tmp_path / "rootfs")
    config = image.config["config"]
    port, metrics_port = free_port(), free_port()
    args = config["Entrypoint"] + [a.replace("0.0.0.0:9000", f"127.0.0.1:{port}")
                                    .replace("0.0.0.0:9090", f"127.0.0.1:{metrics_port}") for a in config["Cmd"]]
    assert args != config["Entrypoint"] + config["Cmd"], "the image's default ports changed: adapt the test"
    (rootfs / "home/nonroot/plugin.json").write_text(json.dumps(PLUGIN))
    args += ["--config", "plugin.json"]  # relative to the image's WorkingDir
    log = tmp_path / "ext-proc.log"
    env = dict(e.split("=", 1) for e in config["Env"])
    with log.open("w") as out:
        server = subprocess.Popen(args, preexec_fn=in_image(rootfs, config), env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(healthy, 30, "the ext_proc server in its image", server, log)
        status = Path(f"/proc/{server.pid}/status").read_text()
        assert re.search(r"^Uid:\s+65532\s", status, re.M), status
        cfg, _ = to_shell(envoy_config(replicas, tmp_path / "unused.wasm"), "ext-proc", ext_proc_port=port)
        with Envoy(cfg, workdir=tmp_path, name="envoy-ext-proc-image", shell="wasm", concurrency=1) as envoy:
            check_routing(envoy, replicas)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert re.search(r"^a2a_affinity_context_found_total 13$", metrics, re.M), metrics
    finally:
        stop_process(server)
    mode = (rootfs / "usr/local/bin/a2a-affinity-ext-proc").stat().st_mode
    assert stat.S_IMODE(mode) == 0o755


# --------------------------------------------------------------------------
# The writers are deterministic


def test_layout_writer_and_sbom_give_the_same_bytes_twice(tmp_path: Path) -> None:
    """scripts/oci_image.py and scripts/sbom.py on the same inputs, in two
    directories, a second apart: identical trees; another epoch changes the
    digests. (The whole release, builds included: scripts/release.sh
    --check-reproducible, run by scripts/test.sh.)"""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, data in {"m.wasm": b"\x00asm\x01\x00\x00\x00", "m.so": b"\x7fELF-so",
                       "busybox": b"\x7fELF-bb", "server": b"\x7fELF-srv", "libc.so.6": b"\x7fELF-libc",
                       "ld-linux-x86-64.so.2": b"\x7fELF-ld"}.items():
        (inputs / name).write_bytes(data)

    def run(out: Path, epoch: int) -> dict[str, bytes]:
        subprocess.run([sys.executable, str(REPO / "scripts/oci_image.py"), "--dist", str(out), "--version", "9.9.9",
                        "--epoch", str(epoch), "--wasm", str(inputs / "m.wasm"),
                        "--dynamic-module", str(inputs / "m.so"),
                        "--busybox", str(inputs / "busybox"), "--ext-proc", str(inputs / "server"),
                        "--runtime-lib", str(inputs / "libc.so.6"),
                        "--runtime-lib", str(inputs / "ld-linux-x86-64.so.2")],
                       check=True, capture_output=True)
        subprocess.run([sys.executable, str(REPO / "scripts/sbom.py"), "--version", "9.9.9", "--epoch", str(epoch),
                        "--out", str(out / "sbom.cdx.json"), "--deb", "busybox-static=1.0=oci/a2a-affinity-dynamic-module"],
                       check=True, capture_output=True)
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    first = run(tmp_path / "a", 1700000000)
    time.sleep(1.1)
    second = run(tmp_path / "b", 1700000000)
    assert first == second
    other = run(tmp_path / "c", 1700000001)
    assert set(other) != set(first), "the epoch did not reach the digests"
    # The fake images read back with the independent reader too.
    for name in IMAGES:
        image = Image(tmp_path / "a/oci" / name)
        assert not image.problems, image.problems
    ext = Image(tmp_path / "a/oci/a2a-affinity-ext-proc").files()
    link = ext["lib64/ld-linux-x86-64.so.2"]
    assert isinstance(link, tarfile.TarInfo) and link.linkname == "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert ext["lib/x86_64-linux-gnu/libc.so.6"] == b"\x7fELF-libc"


def test_sbom_lists_the_shipped_crates_and_their_locked_dependencies(dist: Path) -> None:
    sbom = json.loads((dist / "sbom.cdx.json").read_text())
    assert (sbom["bomFormat"], sbom["specVersion"]) == ("CycloneDX", "1.5")
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", sbom["serialNumber"])
    version = cargo_version()
    assert sbom["metadata"]["component"]["version"] == version
    by_name: dict[str, list[dict[str, Any]]] = {}
    for c in sbom["components"]:
        by_name.setdefault(c["name"], []).append(c)
    for shipped in ("a2a-affinity", "a2a-affinity-dynamic-module", "a2a-affinity-ext-proc", "a2a-affinity-core"):
        assert by_name[shipped][0]["version"] == version, shipped
    # Every registry crate's hash is Cargo.lock's.
    lock = (REPO / "Cargo.lock").read_text()
    for c in sbom["components"]:
        if c["purl"].startswith("pkg:cargo/") and "hashes" in c:
            block = f'name = "{c["name"]}"\nversion = "{c["version"]}"\n'
            assert block in lock and c["hashes"][0]["content"] in lock.split(block, 1)[1].split("[[package]]")[0], c
    # The server's runtime crates are there, a dev-only one is not.
    assert "tokio" in by_name and "tonic" in by_name
    assert "proptest" not in by_name, "a dev-dependency is listed as shipped"
    refs = {c["bom-ref"] for c in sbom["components"]}
    for dep in sbom["dependencies"]:
        assert set(dep["dependsOn"]) <= refs, dep["ref"]
    debs = {c["name"]: {p["value"] for p in c["properties"] if p["name"] == "a2a-affinity:artifact"}
            for c in sbom["components"] if c["purl"].startswith("pkg:deb/")}
    assert {"busybox-static", "libc6", "libgcc-s1"} <= set(debs)
    assert debs["busybox-static"] == {"oci/a2a-affinity-dynamic-module"}
    assert "oci/a2a-affinity-ext-proc" in debs["libgcc-s1"]
    # The unwinder linked into the dynamic module: GCC's libgcc_eh.a, from libgcc-<gcc>-dev.
    unwinder = [name for name in debs if re.fullmatch(r"libgcc-\d+-dev", name)]
    assert len(unwinder) == 1, debs
    assert debs[unwinder[0]] == {"liba2a_affinity_dynamic.so", "oci/a2a-affinity-dynamic-module"}
