"""A local base image for the docker backend, built from the host without any registry.

The image holds only what a sandboxed program needs: the host's system ``python3`` with
its standard library (compiled caches included; ``test``, ``tkinter``, ``idlelib`` and
similar left out), the shared libraries they link against, ``prlimit`` (rlimits),
``sleep`` (idle pooled containers), ``/bin/sh`` and ``bash`` with everyday commands
(``ls``, ``cat``, ``grep``, ``sed``, ...; those the host has), and a minimal ``/etc/passwd``. It is
packed into a tarball in memory and loaded with ``docker import`` (a few seconds, about
50 MB); nothing is pulled. The image carries a label naming its recipe (this module's
source and the host interpreter): :func:`ensure_image` rebuilds it when either changed,
and otherwise leaves the existing image alone.

Run ``python -m agentrl.sandbox.docker_image`` to build it ahead of time (``.ci/setup.sh
--tests`` does).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agentrl.errors import SandboxUnavailableError

__all__ = ["LOCAL_IMAGE", "ensure_image", "build_host_image", "rootfs_tar", "recipe_id", "main"]

#: Tag of the image built from the host (used by the docker backend by default).
LOCAL_IMAGE = "agentrl-sandbox:local"

#: Image label holding :func:`recipe_id` of the build.
RECIPE_LABEL = "agentrl.recipe"

_PYTHON = "/usr/bin/python3"
_build_lock = threading.Lock()
_TOOLS = ("/usr/bin/prlimit", "/usr/bin/sleep", "/usr/bin/true", "/bin/sh")
# Everyday commands for programs and the shell tool, copied when the host has them.
_EXTRA_TOOLS = tuple(f"/usr/bin/{name}" for name in (
    "bash", "echo", "cat", "ls", "env", "grep", "sed", "head", "tail", "wc", "sort", "uniq",
    "cut", "tr", "mkdir", "rm", "cp", "mv", "touch", "false", "printf", "date", "id",
    "uname", "find", "xargs", "diff", "expr", "seq", "basename", "dirname", "tee", "test",
    "pwd", "ln", "chmod", "stat", "du", "md5sum", "sha256sum", "base64", "tac", "nl", "od",
))
# Parts of the standard library a sandboxed program never needs (large or GUI-only).
_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "dist-packages",
         "site-packages"}
_ETC = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/work:/bin/sh\n",
    "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
}


def recipe_id(python: str = _PYTHON) -> str:
    """Names what the image is built from: this module's source and the host interpreter
    (path, size, mtime), so that an upgraded python3 or a changed recipe rebuilds it."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    real = os.path.realpath(python)
    try:
        stat = os.stat(real)
    except OSError:
        return "missing-python"
    digest.update(f"{real}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def ensure_image(client: Any, tag: str = LOCAL_IMAGE, *, python: str = _PYTHON) -> bool:
    """Make sure the engine has ``tag`` built from the current recipe; build it from the
    host (:func:`build_host_image`) when it is missing or stale. True when it was built.

    Raises:
        SandboxUnavailableError: the host lacks a piece, or the engine refused the import.
    """
    from docker.errors import DockerException, ImageNotFound

    recipe = recipe_id(python)
    with _build_lock:
        try:
            labels = client.images.get(tag).labels or {}
            if labels.get(RECIPE_LABEL) == recipe:
                return False
        except ImageNotFound:
            pass
        except DockerException as err:
            raise SandboxUnavailableError(f"cannot look up the docker image {tag}: {err}") from err
        build_host_image(client, tag, python=python)
        return True


def build_host_image(client: Any, tag: str = LOCAL_IMAGE, *, python: str = _PYTHON) -> str:
    """Build and import the image (see module doc); returns ``tag``.

    Raises:
        SandboxUnavailableError: the host lacks a piece (python3, prlimit, ldd), or the
            engine refused the import.
    """
    from docker.errors import DockerException

    data = rootfs_tar(python)
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        repository, version = tag, "latest"
    changes = [f"LABEL {RECIPE_LABEL}={recipe_id(python)}", "WORKDIR /work",
               "ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8"]
    try:
        client.api.import_image_from_data(data, repository=repository, tag=version,
                                          changes=changes)
    except DockerException as err:
        raise SandboxUnavailableError(f"docker could not import the image {tag}: {err}") from err
    return tag


def rootfs_tar(python: str = _PYTHON) -> bytes:
    """The image's root file system as an uncompressed tarball."""
    missing = [p for p in (python, *_TOOLS) if not os.path.exists(p)]
    if missing or shutil.which("ldd") is None:
        raise SandboxUnavailableError(
            f"cannot build the local docker image: missing {', '.join(missing) or 'ldd'} on "
            "the host (Debian packages python3-minimal, util-linux, coreutils, libc-bin); or "
            "pass image=... with python3 and prlimit to the docker backend"
        )
    real_python = os.path.realpath(python)
    version = subprocess.run([real_python, "-c", "import sys; print(sys.version[:4].strip('.'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    stdlib = Path(subprocess.run(
        [real_python, "-I", "-c", "import os; print(os.path.dirname(os.__file__))"],
        capture_output=True, text=True, check=True).stdout.strip())
    packer = _Packer()
    for directory in ("work", "tmp", "etc"):
        packer.directory(directory, 0o1777 if directory != "etc" else 0o755)
    for name, body in _ETC.items():
        packer.data(name, body)
    tools = [*_TOOLS, *(tool for tool in _EXTRA_TOOLS if os.path.exists(tool))]
    binaries = [python, *tools]
    packer.path(python)
    for tool in tools:
        packer.path(tool)
    for link in ("/bin", "/sbin", "/lib", "/lib64"):  # merged-/usr links, e.g. /bin/echo
        if os.path.islink(link):
            packer.path(link)
    for path in _walk(stdlib):
        packer.path(str(path))
        if path.suffix == ".so":
            binaries.append(str(path))
    site_config = Path(f"/etc/python{version}")
    if site_config.is_dir():
        for path in _walk(site_config):
            packer.path(str(path))
    for library in sorted(_libraries(binaries)):
        packer.path(library)
    return packer.finish()


def _walk(root: Path) -> Iterable[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP and not d.startswith("config-"))
        for name in sorted(files):
            yield Path(folder) / name


def _libraries(binaries: Iterable[str]) -> set[str]:
    """Shared libraries (and the dynamic loader) that ``binaries`` need, from ``ldd``."""
    found: set[str] = set()
    for binary in binaries:
        done = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) > parts.index("=>") + 1:
                candidate = parts[parts.index("=>") + 1]
            elif parts and parts[0].startswith("/"):
                candidate = parts[0]
            else:
                continue
            if candidate.startswith("/"):
                found.add(candidate)
    return found


class _Packer:
    """Adds host paths to a tarball, keeping symlinks (and the symlinked folders of a
    merged-/usr system such as /lib -> usr/lib) as symlinks."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buffer, mode="w")
        self._seen: set[str] = set()

    def directory(self, name: str, mode: int = 0o755) -> None:
        if name in self._seen:
            return
        self._seen.add(name)
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        self._tar.addfile(info)

    def data(self, name: str, body: bytes) -> None:
        self._seen.add(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(body), 0o644
        self._tar.addfile(info, io.BytesIO(body))

    def path(self, host_path: str) -> None:
        """Add ``host_path`` (absolute) with its parent folders; follow symlinks."""
        parts = Path(host_path).parts[1:]
        current = Path("/")
        for index, part in enumerate(parts):
            current = current / part
            name = str(current)[1:]
            if current.is_symlink():
                target = os.readlink(current)
                if name not in self._seen:
                    self._seen.add(name)
                    info = tarfile.TarInfo(name)
                    info.type, info.linkname = tarfile.SYMTYPE, target
                    self._tar.addfile(info)
                resolved = (current.parent / target).resolve()
                rest = Path(*parts[index + 1:]) if index + 1 < len(parts) else None
                self.path(str(resolved / rest) if rest else str(resolved))
                return
            if index + 1 < len(parts):
                self.directory(name)
            elif name not in self._seen:
                self._seen.add(name)
                self._tar.add(str(current), arcname=name, recursive=False)

    def finish(self) -> bytes:
        self._tar.close()
        return self._buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """``python -m agentrl.sandbox.docker_image``: build the image if missing or stale."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default=LOCAL_IMAGE, help=f"image tag (default {LOCAL_IMAGE})")
    parser.add_argument("--python", default=_PYTHON, help="host interpreter to copy")
    args = parser.parse_args(argv)
    from agentrl.sandbox.docker import connect

    try:
        client = connect()
        started = time.monotonic()
        built = ensure_image(client, args.tag, python=args.python)
        size = client.images.get(args.tag).attrs.get("Size", 0) / 2**20
    except SandboxUnavailableError as err:
        print(f"[docker-image] not built: {err}", file=sys.stderr)
        return 1
    how = f"built in {time.monotonic() - started:.1f} s" if built else "up to date"
    print(f"[docker-image] {args.tag}: {how} ({size:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
