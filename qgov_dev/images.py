"""Build the operator and executor images without a Docker daemon, reproducibly.

operator/Dockerfile and executor/Dockerfile need a daemon and a base image from a registry; this
builds the same two images (ghcr.io/qgov/operator:0.1.0, ghcr.io/qgov/executor:0.1.0) from Debian's
packages and the hashed locks into OCI archives that `skopeo copy oci-archive:...` and `docker load`
accept. Three layers: Debian bookworm's python3 (mmdebstrap), the locked wheels in a venv at
/opt/qgov (installed by this interpreter's pip, Python 3.11 as Debian's), qgov itself. The same
inputs give the same digests: every tar is sorted with fixed mtimes and owners, gzip carries no
timestamp, .pyc files are checked-hash. Built layers are cached in ~/.cache/qgov/images by a key
over their inputs, so a second build only assembles the archives.

    python -m qgov_dev.images build [--out DIR] [--no-cache]
"""

from __future__ import annotations

import argparse
import base64
import copy
import gzip
import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("QGOV_IMAGE_CACHE", Path.home() / ".cache" / "qgov" / "images"))
# the images' timestamp: file mtimes, the config's `created`; a fixed input, not the build's clock
SOURCE_DATE_EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1764547200"))  # 2025-12-01
VERSION = "0.1.0"
PREFIX = "/opt/qgov"  # the venv: Debian's /usr/bin/python3 with the locked site-packages
SUITE = "bookworm"  # Python 3.11, what the locks' cp311 wheels need
MIRROR = os.environ.get("QGOV_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY = os.environ.get("QGOV_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
PACKAGES = ("python3", "ca-certificates", "libstdc++6")
# Part of every layer's cache key: this builder's own code and the pip that installs (a change to how
# a layer is made makes a new one; a cached layer of an older builder is never taken for a fresh one)
LAYOUT = hashlib.sha256(Path(__file__).read_bytes() + importlib.metadata.version("pip").encode()).hexdigest()[:16]
PATH = f"{PREFIX}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# paths a container runtime provides or that only record the build: never in a layer
DROP = ("dev/", "proc/", "sys/", "run/", "tmp/", "var/cache/", "var/log/", "var/lib/apt/lists/",
        "etc/machine-id", "etc/hostname", "etc/resolv.conf")


@dataclass(frozen=True)
class Image:
    name: str
    lock: str
    entrypoint: tuple[str, ...]
    ports: tuple[int, ...] = ()

    @property
    def ref(self) -> str:
        return f"ghcr.io/qgov/{self.name}:{VERSION}"


IMAGES = (
    Image("operator", "requirements-operator.lock",
          ("qgov", "operator", "--liveness", "http://0.0.0.0:8080/healthz"), (8080, 9090)),
    Image("executor", "requirements-executor.lock", ("python", "-m", "executor")),
)


@dataclass(frozen=True)
class Layer:
    """A gzipped layer tar in the cache: digest of the gzip (the blob), diff_id of the tar."""
    path: Path
    digest: str
    diff_id: str
    cached: bool
    packages: tuple[str, ...] = ()  # the base layer's Debian packages, name=version: its real input

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _log(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


# -- tar writing -----------------------------------------------------------------------------------

def _normal(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """One entry as every build writes it: clamped mtime, numeric owner kept, no names."""
    info.mtime = min(int(info.mtime), SOURCE_DATE_EPOCH)
    info.uname = info.gname = ""
    info.pax_headers = {}
    return info


def _hardlinks_first_named(
        ordered: list[tuple[tarfile.TarInfo, bytes | None]]) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """In a name-sorted tar a hard link may come before its file, which no reader accepts: the
    first name of each group of links carries the data, the others link to it."""
    by_name = {info.name: i for i, (info, _) in enumerate(ordered)}
    groups: dict[str, list[str]] = {}
    for info, _ in ordered:
        if info.islnk():
            groups.setdefault(info.linkname, []).append(info.name)
    for target, links in groups.items():
        first = min([target, *links])
        if first == target or target not in by_name:
            continue
        data_info, data = ordered[by_name[target]]
        for name in [target, *links]:
            info = copy.copy(data_info) if name == first else copy.copy(ordered[by_name[name]][0])
            info.name = name
            if name == first:
                ordered[by_name[name]] = (info, data)
            else:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
                ordered[by_name[name]] = (info, None)
    return ordered


def _write_layer(entries: Iterator[tuple[tarfile.TarInfo, bytes | None]], name: str,
                 key: str) -> Layer:
    """Sorted entries into a tar, gzipped without a timestamp, stored under CACHE/name-key."""
    ordered = _hardlinks_first_named(sorted(entries, key=lambda e: e[0].name))
    status = next((data for info, data in ordered if info.name == "var/lib/dpkg/status"), None)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in ordered:
            tar.addfile(_normal(info), io.BytesIO(data) if data is not None else None)
    tarbytes = raw.getvalue()
    out = CACHE / f"{name}-{key}"
    tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix=f".{name}-"))
    tmp.chmod(0o755)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, filename="", compresslevel=6) as f:
        f.write(tarbytes)
    blob = gz.getvalue()
    (tmp / "layer.tar.gz").write_bytes(blob)
    meta = {"digest": "sha256:" + _sha(blob), "diff_id": "sha256:" + _sha(tarbytes),
            "packages": _packages(status) if status is not None else []}
    (tmp / "layer.json").write_text(json.dumps(meta))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return Layer(out / "layer.tar.gz", meta["digest"], meta["diff_id"], cached=False,
                 packages=tuple(meta["packages"]))


def _packages(status: bytes) -> list[str]:
    """name=version of every package in a dpkg status file, sorted."""
    found = []
    for stanza in status.decode(errors="replace").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if "Package" in fields and "Version" in fields:
            found.append(f"{fields['Package']}={fields['Version']}")
    return sorted(found)


def differences(a: Path, b: Path, limit: int = 20) -> list[str]:
    """The entries two gzipped layer tars differ in (name, and how), at most `limit`: what a
    reproducibility failure names."""
    def members(path: Path) -> dict[str, tuple[object, ...]]:
        out: dict[str, tuple[object, ...]] = {}
        with tarfile.open(path) as tar:
            for info in tar:
                f = tar.extractfile(info) if info.isreg() else None
                out[info.name] = (info.type, info.mode, info.uid, info.gid, info.mtime, info.linkname,
                                  _sha(f.read()) if f else "")
        return out
    ma, mb = members(a), members(b)
    found = [f"only in the first: {n}" for n in sorted(set(ma) - set(mb))]
    found += [f"only in the second: {n}" for n in sorted(set(mb) - set(ma))]
    found += [f"differs: {n} {ma[n]} != {mb[n]}" for n in sorted(set(ma) & set(mb)) if ma[n] != mb[n]]
    return found[:limit]


def _cached(name: str, key: str) -> Layer | None:
    d = CACHE / f"{name}-{key}"
    if not (d / "layer.json").is_file():
        return None
    meta = json.loads((d / "layer.json").read_text())
    return Layer(d / "layer.tar.gz", meta["digest"], meta["diff_id"], cached=True,
                 packages=tuple(meta.get("packages", ())))


def _tree_entries(root: Path) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """Every file under root (a staged filesystem) as a root-owned entry, its path relative."""
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            info = tarfile.TarInfo(rel)
            st = p.lstat()
            info.mtime = SOURCE_DATE_EPOCH
            if p.is_symlink():
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(p), 0o777
                yield info, None
            elif p.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                yield info, None
            else:
                data = p.read_bytes()
                info.size, info.mode = len(data), 0o755 if st.st_mode & 0o111 else 0o644
                yield info, data


# -- the three layers ------------------------------------------------------------------------------

def _sources() -> list[str]:
    return [f"deb {MIRROR} {SUITE} main", f"deb {MIRROR} {SUITE}-updates main",
            f"deb {SECURITY} {SUITE}-security main"]


def _mirror_state() -> str:
    """The suites' Release files: the base layer's packages change exactly when these do."""
    h = hashlib.sha256()
    for line in _sources():
        _, url, suite, _ = line.split()
        with urllib.request.urlopen(f"{url}/dists/{suite}/Release", timeout=60) as r:
            h.update(r.read())
    return h.hexdigest()


def _base_key() -> str:
    return _sha(json.dumps([LAYOUT, SUITE, PACKAGES, _sources(), _mirror_state(),
                            SOURCE_DATE_EPOCH]).encode())[:16]


def base_layer(use_cache: bool = True) -> Layer:
    """Debian bookworm with python3, its stdlib compiled to checked-hash .pyc, user qgov 10001."""
    key = _base_key()
    if use_cache and (hit := _cached("base", key)):
        return hit
    _log(f"base layer: mmdebstrap {SUITE} {' '.join(PACKAGES)}")
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH))
    hooks = [
        'find "$1/usr" -name __pycache__ -prune -exec rm -rf {} +',
        'chroot "$1" python3 -I -S -m compileall -q -j1 --invalidation-mode checked-hash'
        ' /usr/lib/python3.11 /usr/lib/python3/dist-packages >/dev/null',
        'echo "qgov:x:10001:10001::/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"',
        'echo "qgov:x:10001:" >> "$1/etc/group"',
        'mkdir -p "$1/app"',
    ]
    with tempfile.TemporaryDirectory(prefix="qgov-base-") as tmp:
        out = Path(tmp) / "base.tar"
        cmd = ["mmdebstrap", "--quiet", "--variant=essential", "--include=" + ",".join(PACKAGES),
               "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
               "--dpkgopt=path-exclude=/usr/share/locale/*"]
        cmd += [f"--customize-hook={h}" for h in hooks]
        cmd += [SUITE, str(out), *_sources()]
        subprocess.run(cmd, check=True, env=env)

        def entries() -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
            with tarfile.open(out) as tar:
                for info in tar:
                    name = info.name.removeprefix("./")
                    if not name or any(name == d.rstrip("/") and not d.endswith("/") or
                                       name.startswith(d) for d in DROP):
                        continue
                    if info.ischr() or info.isblk() or info.isfifo():
                        continue
                    info.name = name
                    if info.islnk():
                        info.linkname = info.linkname.removeprefix("./")
                    f = tar.extractfile(info) if info.isreg() else None
                    yield info, f.read() if f else None
        return _write_layer(entries(), "base", key)


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                   check=True)


def _finish_prefix(stage: Path) -> None:
    """Console scripts point at the image's python (and their RECORD lines say so), no
    install-time URLs, checked-hash .pyc: nothing of the building machine (where its python
    lives) is left in the layer."""
    prefix = stage / PREFIX.lstrip("/")
    rewritten: dict[Path, bytes] = {}
    for script in (prefix / "bin").glob("*"):
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if data.startswith(b"#!"):
                rest = data.split(b"\n", 1)[1] if b"\n" in data else b""
                rewritten[script.resolve()] = f"#!{PREFIX}/bin/python\n".encode() + rest
                script.write_bytes(rewritten[script.resolve()])
    for record in prefix.glob("lib/python3.11/site-packages/*.dist-info/RECORD"):
        _rehash_record(record, rewritten)
    for direct in prefix.glob("lib/python3.11/site-packages/*.dist-info/direct_url.json"):
        record = direct.parent / "RECORD"
        lines = record.read_text().splitlines(keepends=True)
        record.write_text("".join(line for line in lines if "/direct_url.json," not in line))
        direct.unlink()
    for cache in list(prefix.rglob("__pycache__")):
        shutil.rmtree(cache)
    _compile(prefix / "lib", strip=stage)


def _rehash_record(record: Path, rewritten: dict[Path, bytes]) -> None:
    """A wheel's RECORD with the hash and size of each console script as `rewritten` (pip
    recorded them with the building interpreter's path in the shebang)."""
    site = record.parent.parent
    lines = []
    for line in record.read_text().splitlines(keepends=True):
        path, sep, _ = line.partition(",")
        data = rewritten.get((site / path).resolve()) if sep else None
        if data is not None:
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            line = f"{path},sha256={digest},{len(data)}\n"
        lines.append(line)
    record.write_text("".join(lines))


def _compile(tree: Path, strip: Path) -> None:
    """Checked-hash .pyc for every module under tree, the same bytes on every build.

    marshal marks an object it writes as shared when its reference count is above one, so a
    .pyc's bytes depend on which strings the compiling process holds (modules it imported, earlier
    builds in it) and, with worker processes, on which worker took which file. One fresh,
    isolated interpreter without site compiles the whole tree in order."""
    done = subprocess.run([sys.executable, "-I", "-S", "-m", "compileall", "-qq", "-j", "1",
                           "--invalidation-mode", "checked-hash", "-s", str(strip), "-p", "/",
                           str(tree)], check=False)
    if done.returncode != 0:
        _log("some files did not compile (left without .pyc)")


def deps_layer(image: Image, base: Layer, use_cache: bool = True) -> Layer:
    """The locked wheels in a venv at /opt/qgov over Debian's python3 (no pip in the image)."""
    lock = (REPO / image.lock).read_bytes()
    key = _sha(json.dumps([LAYOUT, base.diff_id, _sha(lock), sys.version_info[:2]]).encode())[:16]
    if use_cache and (hit := _cached(f"{image.name}-deps", key)):
        return hit
    _log(f"{image.name} dependency layer: pip install --require-hashes -r {image.lock}")
    with tempfile.TemporaryDirectory(prefix="qgov-deps-") as tmp:
        stage = Path(tmp)
        _pip("install", "--ignore-installed", "--require-hashes", "--no-deps", "--only-binary=:all:",
             "--no-compile",
             "--no-warn-script-location", "--prefix", PREFIX, "--root", str(stage),
             "-r", str(REPO / image.lock))
        prefix = stage / PREFIX.lstrip("/")
        (prefix / "bin").mkdir(parents=True, exist_ok=True)
        for name in ("python", "python3", "python3.11"):
            (prefix / "bin" / name).unlink(missing_ok=True)
            (prefix / "bin" / name).symlink_to("/usr/bin/python3.11")
        (prefix / "pyvenv.cfg").write_text(
            "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n")
        _finish_prefix(stage)
        return _write_layer(_tree_entries(stage), f"{image.name}-deps", key)


def _app_files() -> list[str]:
    """What the Dockerfiles COPY, as tracked by git (the working tree's content)."""
    out = subprocess.run(["git", "ls-files", "-z", "pyproject.toml", "README.md", "LICENSE", "governance",
                          "executor", "migrations"], cwd=REPO, check=True, capture_output=True)
    return sorted(p for p in out.stdout.decode().split("\0") if p)


def app_layer(use_cache: bool = True) -> Layer:
    """qgov itself (its wheel, built here without resolving anything), the same for both images."""
    files = _app_files()
    h = hashlib.sha256(f"{LAYOUT} {sys.version_info[:2]}".encode())
    for rel in files:
        p = REPO / rel
        h.update(rel.encode() + b"\0" + (os.readlink(p).encode() if p.is_symlink()
                                          else p.read_bytes()) + b"\0")
    key = h.hexdigest()[:16]
    if use_cache and (hit := _cached("app", key)):
        return hit
    _log("application layer: qgov")
    with tempfile.TemporaryDirectory(prefix="qgov-app-") as tmp:
        src, wheels, stage = Path(tmp, "src"), Path(tmp, "wheels"), Path(tmp, "stage")
        for rel in files:
            dst = src / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst, follow_symlinks=False)
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH))
        subprocess.run([sys.executable, "-m", "pip", "-q", "wheel", "--no-deps",
                        "--no-build-isolation", "-w", str(wheels), str(src)], check=True, env=env)
        _pip("install", "--ignore-installed", "--no-deps", "--no-compile", "--no-warn-script-location",
             "--prefix",
             PREFIX, "--root", str(stage), *map(str, wheels.glob("*.whl")))
        _finish_prefix(stage)
        return _write_layer(_tree_entries(stage), "app", key)


# -- the image and its archive ---------------------------------------------------------------------

def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def config(image: Image, layers: list[Layer]) -> dict[str, object]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(SOURCE_DATE_EPOCH))
    cfg: dict[str, object] = {
        "User": "10001:10001",
        "Env": [f"PATH={PATH}", f"VIRTUAL_ENV={PREFIX}", "LANG=C.UTF-8",
                "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"],
        "Entrypoint": list(image.entrypoint),
        "WorkingDir": "/app",
        "Labels": {"org.opencontainers.image.version": VERSION,
                   "org.opencontainers.image.title": f"qgov {image.name}"},
    }
    if image.ports:
        cfg["ExposedPorts"] = {f"{p}/tcp": {} for p in image.ports}
    return {"architecture": "amd64", "os": "linux", "created": created, "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": created, "created_by": f"qgov_dev.images: {what}"}
                        for what in ("debian base", f"{image.lock}", "qgov")]}


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


def write_archive(image: Image, layers: list[Layer], out: Path) -> str:
    """An OCI layout in a tar (index.json, blobs) with docker's manifest.json beside it."""
    cfg = _json(config(image, layers))
    cfg_digest = "sha256:" + _sha(cfg)
    manifest = _json({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cfg_digest, "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer.digest, "size": layer.size} for layer in layers]})
    man_digest = "sha256:" + _sha(manifest)
    index = _json({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                  "digest": man_digest, "size": len(manifest),
                                  "annotations": {"io.containerd.image.name": image.ref,
                                                  "org.opencontainers.image.ref.name": VERSION}}]})
    blob = _blob_name
    docker = _json([{"Config": blob(cfg_digest), "RepoTags": [image.ref],
                     "Layers": [blob(layer.digest) for layer in layers]}])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes | None = None, path: Path | None = None) -> None:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = SOURCE_DATE_EPOCH, 0o644
            if name.endswith("/"):
                info.name, info.type, info.mode = name.rstrip("/"), tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif path is not None:
                info.size = path.stat().st_size
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
        add("blobs/")
        add("blobs/sha256/")
        blobs: dict[str, tuple[bytes | None, Path | None]] = {
            blob(cfg_digest): (cfg, None), blob(man_digest): (manifest, None)}
        blobs.update({blob(layer.digest): (None, layer.path) for layer in layers})
        for name in sorted(blobs):
            data, path = blobs[name]
            add(name, data, path)
        add("index.json", index)
        add("manifest.json", docker)
        add("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
    tmp.rename(out)
    return man_digest


def unpack(archive: Path, dest: Path) -> dict[str, object]:
    """An archive's layers untarred in order into dest (whiteouts honoured); returns its config."""
    with tarfile.open(archive) as outer:
        def blob(name: str) -> IO[bytes]:
            f = outer.extractfile(name if name == "index.json" else _blob_name(name))
            assert f is not None, name
            return f
        index = json.load(blob("index.json"))
        manifest = json.load(blob(index["manifests"][0]["digest"]))
        cfg = json.load(blob(manifest["config"]["digest"]))
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=blob(layer["digest"]), mode="r|gz") as tar:
                for info in tar:
                    head, _, base = info.name.rpartition("/")
                    if base == ".wh..wh..opq":
                        for child in (dest / head).iterdir():
                            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() \
                                else child.unlink()
                    elif base.startswith(".wh."):
                        gone = dest / head / base[4:]
                        shutil.rmtree(gone) if gone.is_dir() and not gone.is_symlink() \
                            else gone.unlink(missing_ok=True)
                    else:
                        tar.extract(info, dest, set_attrs=True, numeric_owner=True)
    return cfg  # type: ignore[no-any-return]


def build(out: Path, use_cache: bool = True) -> dict[str, dict[str, Any]]:
    """Both images into out/<name>.tar; per image its digest, size and time, for the report."""
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    base = base_layer(use_cache)
    app = app_layer(use_cache)
    shared = time.monotonic() - t0
    result: dict[str, dict[str, Any]] = {}
    for image in IMAGES:
        t1 = time.monotonic()
        layers = [base, deps_layer(image, base, use_cache), app]
        path = out / f"{image.name}.tar"
        digest = write_archive(image, layers, path)
        result[image.name] = {
            "ref": image.ref, "archive": str(path), "digest": digest,
            "size_mb": round(path.stat().st_size / 1e6, 1),
            "layers_cached": [layer.cached for layer in layers],
            "layers": layers,
            "seconds": round(time.monotonic() - t1 + shared, 1)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qgov_dev.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build both images into OCI archives")
    b.add_argument("--out", type=Path, default=REPO / "dist" / "images")
    b.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = build(args.out, use_cache=not args.no_cache)
    for r in result.values():
        cached = "cached" if all(r["layers_cached"]) else (
            "cold" if not any(r["layers_cached"]) else "partly cached")
        print(f"{r['ref']}  {r['archive']}  {r['size_mb']} MB  {r['seconds']} s ({cached})  "
              f"{r['digest']}")
    print(f"total {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
