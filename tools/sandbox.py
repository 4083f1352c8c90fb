"""Run a student's kernel where it can read nothing it should not (`make grade`, isolation).

nbgrader starts the kernel through this file (a kernelspec whose `argv` is
`python tools/sandbox.py <spec.json> {connection_file} ...`). As root, before it becomes the
kernel (same process, `exec`), it:

1. enters a private mount namespace and mounts empty file systems over the course folder, the
   repository, the grader's home, the jobs folder and every top-level folder that is not the
   operating system's (/home, /root, /work, /srv, /opt, ...: other checkouts of the course may
   lie there), so `solutions/`, `.git`, `grading/`, the gradebooks and every other student's
   files are simply not there; then binds back read-only the few folders a kernel needs (the
   Python environment and the `utils` library);
2. gives the kernel its own empty `/tmp`, `/var/tmp` and `/dev/shm` (size-limited), with
   `HOME=/tmp/home` and the working directory `/tmp/work`;
3. builds the environment from a short allow-list (no tokens, keys, secrets or cloud
   credentials can pass, whatever their name);
4. sets resource limits (address space = the per-student memory limit, processes, file size,
   CPU time, no core dumps) and `no_new_privs`;
5. drops to an unprivileged user id of its own (one per student job, never shared), so the
   kernel cannot read root-only files such as the student's gradebook copy, cannot signal or
   inspect the grader, and everything it leaves running can be found and killed by that uid.

Without root (an instructor's laptop) steps 1, 2 and 5 are skipped: the kernel still gets the
clean environment, a fresh empty HOME and working directory, and the resource limits, and
`tools.grade` reports the isolation as partial. This file uses the standard library only: it
runs before the kernel, once per student.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import re
import resource
import signal
import sys
import time
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 1, 2, 4, 32, 4096, 8192, 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE = 38, 4
# new mount API (same numbers on every architecture): detached bind mounts, no staging folder
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429
AT_FDCWD, AT_RECURSIVE, OPEN_TREE_CLONE, MOVE_MOUNT_F_EMPTY_PATH = -100, 0x8000, 1, 0x4

# Environment a kernel may see. Anything else (tokens, keys, cloud credentials, proxies,
# the grader's paths) is dropped; names that look like credentials are dropped even here.
ALLOWED_ENV = {"PATH", "LANG", "LANGUAGE", "TERM", "TZ", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED",
               "PYTHONUNBUFFERED", "JPY_PARENT_PID", "NBGRADER_EXECUTION", "MPLBACKEND",
               "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS"}
ALLOWED_PREFIXES = ("LC_", "COURSE_")
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSW|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|"
                         r"^AWS_|^GITHUB_|^GH_|^HF_|^HUGGING|^OPENAI|^ANTHROPIC|^AZURE|^GOOGLE|^GCP_|"
                         r"^GCLOUD|^CLOUDSDK|^SSH_|^GPG_|^GNUPG|^NETRC|^PIP_|^CONDA_|^DOCKER_|^KUBE|"
                         r"^VAULT_|^NPM_|^CI_JOB|^ACTIONS_|^RUNNER_", re.I)


def looks_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def scrub_env(env: dict[str, str]) -> dict[str, str]:
    """The environment minus anything whose name looks like a credential (for the grader's
    own worker processes; kernels get the stricter allow-list of :func:`kernel_env`)."""
    return {k: v for k, v in env.items() if not looks_secret(k)}


def kernel_env(env: dict[str, str], *, home: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    out = {k: v for k, v in env.items()
           if (k in ALLOWED_ENV or k.startswith(ALLOWED_PREFIXES)) and not looks_secret(k)}
    out.update({"HOME": home, "USER": "student", "LOGNAME": "student", "SHELL": "/bin/sh",
                "TMPDIR": "/tmp", "MPLCONFIGDIR": f"{home}/.config/matplotlib",
                "MALLOC_ARENA_MAX": "2", "PYTHONNOUSERSITE": "1"})
    out.update(extra or {})
    return out


# --------------------------------------------------------------------------------------------
# used by the grader (parent side)


def processes_of(uid: int) -> list[int]:
    """Pids whose real or effective uid is `uid` (a sandbox uid is never shared)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        ids = [int(x) for x in line.split()[1:3]]
                        if uid in ids:
                            pids.append(int(entry))
                        break
        except OSError:
            continue
    return pids


def kill_uid(uid: int, rounds: int = 20) -> int:
    """SIGKILL every process running as the sandbox uid `uid`; how many there were."""
    if uid < 100_000:  # never touch a real account
        raise ValueError(f"refusing to kill processes of uid {uid}")
    killed = set()
    for _ in range(rounds):
        pids = processes_of(uid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return len(killed)


def kill_session(sid: int) -> int:
    """Without a sandbox uid: SIGKILL what is left of a kernel's session (its pid is the sid)."""
    killed = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if os.getsid(int(entry)) == sid:
                    os.kill(int(entry), signal.SIGKILL)
                    killed += 1
            except OSError:
                pass
    return killed


def probe() -> tuple[bool, str]:
    """Can this machine run kernels fully isolated? (root, mount namespaces, setuid)."""
    if not hasattr(os, "geteuid") or sys.platform != "linux":
        return False, "not Linux"
    if os.geteuid() != 0:
        return False, "not running as root"
    import subprocess

    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="sandbox-probe-")
    try:
        p = subprocess.run([sys.executable, __file__, "--probe", d], capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if p.returncode != 0:
        return False, (p.stderr.strip().splitlines() or ["probe failed"])[-1]
    return True, "private mount namespace, unprivileged uid, resource limits"


# --------------------------------------------------------------------------------------------
# the kernel launcher (child side)

_libc = None


def _call(name: str, *args) -> None:
    global _libc
    _libc = _libc or ctypes.CDLL(None, use_errno=True)
    if getattr(_libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args[:2]}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _call("mount", enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _open_tree(path: str) -> int:
    """A detached copy of the mount tree at `path` (open_tree(2), Linux >= 5.2)."""
    global _libc
    _libc = _libc or ctypes.CDLL(None, use_errno=True)
    fd = _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), OPEN_TREE_CLONE | AT_RECURSIVE)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"open_tree({path}): {os.strerror(err)}")
    return fd


def _move_mount(fd: int, target: str) -> None:
    if _libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"move_mount({target}): {os.strerror(err)}")


def isolate_filesystem(hide: list[str], keep: list[str], tmp_size: str) -> None:
    """Private mounts: fresh tmpfs on /tmp, /var/tmp, /dev/shm and over every `hide` folder,
    with the `keep` folders (which may lie inside hidden ones, or in /tmp) put back read-only."""
    _call("unshare", CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = sorted({os.path.realpath(k) for k in keep if k and os.path.isdir(k)})
    trees = [(_open_tree(k), k) for k in keep]  # taken before anything is covered
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_size},mode=1777")
    for extra in ("/var/tmp", "/dev/shm", "/run/lock"):
        if os.path.isdir(extra):
            _mount("tmpfs", extra, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    hide = sorted({os.path.realpath(h) for h in hide if h})
    for h in hide:
        if h != "/" and os.path.isdir(h) and not any(_under(h, o) and h != o for o in hide):
            _mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    for fd, k in trees:
        os.makedirs(k, 0o755, exist_ok=True)
        _move_mount(fd, k)
        os.close(fd)
        _mount(None, k, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def set_limits(spec: dict) -> None:
    def lim(which, value):
        if value:
            resource.setrlimit(which, (int(value), int(value)))
    lim(resource.RLIMIT_AS, spec.get("memory_bytes"))
    lim(resource.RLIMIT_CPU, spec.get("cpu_seconds"))
    lim(resource.RLIMIT_FSIZE, spec.get("fsize_bytes"))
    if spec.get("uid") is not None:  # counts processes of the real uid: only meaningful when unique
        lim(resource.RLIMIT_NPROC, spec.get("nproc"))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# The kernel starts as `python -c BOOT <guard> -f <connection file> ...`: BOOT runs the guard's
# sources (tools/guard/, standard library only) in private namespaces, installs it, then starts
# ipykernel in the same process. The guard's records go to the FIFO opened here, before the
# privileges drop, so the kernel holds the only writing end and never its path.
GUARD_SOURCES = ("watch", "cells", "events", "kernel")
BOOT = """
import sys
def _course_guard():
    import json
    spec, sources = json.loads(sys.argv.pop(1))
    env = {}
    for name, source in sources:
        ns = {"__name__": "course_guard_" + name, "__builtins__": dict(vars(__import__("builtins"))), "GUARD": env}
        exec(compile(source, "<course-guard:" + name + ">", "exec"), ns)
        env[name] = ns
    env["kernel"]["install"](spec, env)
_course_guard()
del _course_guard
import runpy
runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
"""


def guard_argv(guard: dict) -> list[str]:
    """`-c BOOT <spec and sources>` with the channel's fd (opened here, inherited by the kernel)."""
    spec = json.loads(Path(guard["spec"]).read_text())
    folder = Path(__file__).resolve().parent / "guard"
    sources = [(name, (folder / f"{name}.py").read_text()) for name in GUARD_SOURCES]
    opened = os.open(guard["fifo"], os.O_WRONLY)
    fd = fcntl.fcntl(opened, fcntl.F_DUPFD, 200)   # far from 0-2, which the kernel re-plumbs
    os.close(opened)
    os.set_inheritable(fd, True)
    spec["fd"] = fd
    return ["-c", BOOT, json.dumps([spec, sources])]


def launch(spec_path: str, connection_file: str, extra_args: list[str]) -> None:
    spec = json.loads(Path(spec_path).read_text())
    conn = Path(connection_file).read_text()
    start = guard_argv(spec["guard"]) if spec.get("guard") else ["-m", "ipykernel_launcher"]
    cwd_files = {}
    for f in Path.cwd().iterdir() if Path.cwd().is_dir() else []:  # data files shipped with a chapter
        if f.is_file() and f.suffix != ".ipynb" and f.stat().st_size < 50_000_000:
            cwd_files[f.name] = f.read_bytes()
    Path(spec["pid_file"]).write_text(str(os.getpid()))
    uid = spec.get("uid")
    if uid is not None:
        isolate_filesystem(spec["hide"], spec["keep"], spec.get("tmp_size", "512m"))
        base = "/tmp"
    else:
        base = spec["scratch"]  # a fresh folder of this job, outside the course
    home, work = f"{base}/home", f"{base}/work"
    for d in (home, work):
        os.makedirs(d, 0o700, exist_ok=True)
    new_conn = f"{home}/.kernel-connection.json"
    with open(new_conn, "w") as f:
        f.write(conn)
    os.chmod(new_conn, 0o600)
    for name, data in cwd_files.items():
        Path(work, name).write_bytes(data)
    if uid is not None:
        for d in (home, work):
            for dirpath, dirnames, filenames in os.walk(d):
                for n in [dirpath, *(os.path.join(dirpath, x) for x in dirnames + filenames)]:
                    os.chown(n, uid, uid)
    env = kernel_env(os.environ, home=home, extra=spec.get("env"))
    os.chdir(work)
    set_limits(spec)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        if os.getuid() == 0 or os.geteuid() == 0:
            raise SystemExit("could not drop privileges")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    args = [sys.executable, *start, "-f", new_conn, *extra_args]
    if not any(a.startswith("--HistoryManager.hist_file") for a in args):
        args.append("--HistoryManager.hist_file=:memory:")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, args, env)


def _probe_child(d: str) -> None:
    """Exit 0 when the namespace, mounts and uid change all work here."""
    keep = os.path.join(d, "keep")
    os.mkdir(keep)
    Path(keep, "x").write_text("ok")
    Path(d, "secret").write_text("secret")
    isolate_filesystem([d], [keep], "1m")
    assert not os.path.exists(os.path.join(d, "secret")) and Path(keep, "x").read_text() == "ok"
    os.setgroups([])
    os.setresgid(2_000_000_001, 2_000_000_001, 2_000_000_001)
    os.setresuid(2_000_000_001, 2_000_000_001, 2_000_000_001)
    assert os.geteuid() == 2_000_000_001


if __name__ == "__main__":
    if sys.argv[1] == "--probe":
        _probe_child(sys.argv[2])
        raise SystemExit(0)
    launch(sys.argv[1], sys.argv[2], sys.argv[3:])
