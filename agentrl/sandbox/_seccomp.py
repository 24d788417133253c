"""The seccomp filter every bwrap sandbox runs under (``bwrap --seccomp FD``).

Built once per process with libseccomp (through the ``pyseccomp`` binding) and exported
as a classic BPF program; each sandbox gets it on a fresh memfd. The filter allows
everything except the system calls below, which fail with ``EPERM`` (``clone3`` with
``ENOSYS``, so that libc falls back to ``clone``, whose flags the filter can inspect).
System calls of another ABI (32-bit ``int 0x80``, x32) kill the process.

What each group closes:

* ``ptrace``, ``process_vm_readv``/``writev``, ``pidfd_open``, ``pidfd_getfd``,
  ``kcmp``: reaching into another process of the sandbox, e.g. bwrap's pid 1 and the
  descriptor it reports the exit status on (a forged exit status).
* ``keyctl``, ``add_key``, ``request_key``: kernel keyrings are not namespaced, so two
  sandboxes running as the same host uid could share keys (a side channel) and quota.
* ``unshare``/``clone`` with any namespace flag, ``clone3``, ``setns``: a nested user
  namespace gives uid 0 and capabilities there (e.g. mounting an unsized tmpfs).
* ``mount`` and the new mount API, ``umount2``, ``pivot_root``, ``chroot``: the mount
  layout is fixed by bwrap.
* ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring_*``, ``kexec_*``, module
  loading, ``acct``, ``swapon``/``swapoff``, ``reboot``, clock setting, ``syslog``,
  ``quotactl``, ``open_by_handle_at``, ``iopl``/``ioperm``, ``personality``: kernel attack
  surface no program under test needs.
"""

from __future__ import annotations

import errno
import os
import threading

from agentrl.errors import SandboxUnavailableError

__all__ = ["DENIED", "NAMESPACE_FLAGS", "filter_bytes", "filter_fd"]

#: System calls that always fail with EPERM inside a sandbox.
DENIED: tuple[str, ...] = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd", "kcmp",
    "keyctl", "add_key", "request_key",
    "setns",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "acct", "swapon", "swapoff", "reboot", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "syslog", "quotactl", "quotactl_fd",
    "open_by_handle_at", "name_to_handle_at", "iopl", "ioperm", "personality",
    "lookup_dcookie", "uselib", "vhangup", "fanotify_init",
)
#: clone/unshare flags that create a namespace (CLONE_NEW*).
NAMESPACE_FLAGS: tuple[int, ...] = (
    0x00000080,  # CLONE_NEWTIME
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

_cache: dict[str, bytes] = {}
_lock = threading.Lock()


def _build() -> bytes:
    try:
        import pyseccomp as sc
    except ImportError as err:  # the binding is a dependency; libseccomp2 may be missing
        raise SandboxUnavailableError(
            f"cannot build the sandbox's seccomp filter: {err}; install the Python package "
            "'pyseccomp' and the Debian package 'libseccomp2'"
        ) from err
    try:
        flt = sc.SyscallFilter(sc.ALLOW)
        for name in DENIED:
            try:
                flt.add_rule(sc.ERRNO(errno.EPERM), name)
            except (ValueError, RuntimeError, OSError):
                pass  # unknown to this kernel/libseccomp: nothing to deny
        flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        for flag in NAMESPACE_FLAGS:
            flt.add_rule(sc.ERRNO(errno.EPERM), "unshare", sc.Arg(0, sc.MASKED_EQ, flag, flag))
            # x86-64 and arm64 both pass clone's flags as its first argument.
            flt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        read_fd = os.memfd_create("agentrl-seccomp-build", 0)
        try:
            with os.fdopen(os.dup(read_fd), "wb") as handle:
                flt.export_bpf(handle)
            os.lseek(read_fd, 0, os.SEEK_SET)
            program = b""
            while chunk := os.read(read_fd, 1 << 16):
                program += chunk
        finally:
            os.close(read_fd)
    except (OSError, RuntimeError, ValueError, AttributeError) as err:
        raise SandboxUnavailableError(
            f"cannot build the sandbox's seccomp filter with libseccomp: {err}; install "
            "the Debian package 'libseccomp2'"
        ) from err
    if not program or len(program) % 8:
        raise SandboxUnavailableError("libseccomp exported an empty or malformed filter")
    return program


def filter_bytes() -> bytes:
    """The filter as a BPF program (struct sock_filter array), built once."""
    with _lock:
        if "bpf" not in _cache:
            _cache["bpf"] = _build()
        return _cache["bpf"]


def filter_fd() -> int:
    """A fresh memfd holding the filter at offset 0 (bwrap reads it to EOF); the caller
    closes it."""
    data = filter_bytes()
    fd = os.memfd_create("agentrl-seccomp", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
