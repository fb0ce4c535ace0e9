"""The system libvirt daemon, on hosts where no init system starts it for us.

``qemu:///system`` is served by ``libvirtd`` running as root.  A distribution
normally starts it with systemd; the lab also runs where there is no systemd
(containers, CI machines, minimal VMs), so labkit can configure and start the
daemon itself — and only stops a daemon it started.  What it takes (measured
on Debian 12, libvirt 9.0, see ``docs/developing.md``):

* a ``libvirt-qemu`` user: the QEMU driver looks it up at start even when
  ``qemu.conf`` says to run guests as root;
* ``/var/{log,lib,cache}/libvirt``;
* ``/etc/libvirt/qemu.conf`` with ``user``/``group`` root (else every define
  re-probes QEMU, ~40 s), ``security_driver = "none"`` (no SELinux/AppArmor
  here) and ``stdio_handler = "file"`` (else ``virtlogd`` must run too);
* readiness checked by a real connection: ``libvirtd --daemon`` exits 0 even
  when its QEMU driver failed, and the socket appears before the driver works.

The daemon labkit starts gets ``--timeout``: like the per-user session daemon,
it exits by itself once it has had no client and no running guest for that
long, so a test run or a closed notebook never leaves it behind.
It runs under :mod:`labkit.subreaper`, which reaps each QEMU the moment it
exits: PID 1 here reaps orphans only every ~2 s, and libvirt holds a
domain's lock until its QEMU is gone (a power-off reached labkit ~1.4 s late).
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from labkit import runtime
from labkit.errors import AccessDeniedError, LabkitError, MissingToolError
from labkit.i18n import Phrase
from labkit.i18n import noop as N_

SYSTEM_URI = "qemu:///system"
LIBVIRTD = Path("/usr/sbin/libvirtd")
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
PID_FILE = Path("/run/libvirtd.pid")
LOG_FILE = Path("/var/log/libvirt/libvirtd.log")
#: Where the system daemon keeps persistent domain definitions, and each domain's QEMU log.
SYSTEM_DEFINITIONS = Path("/etc/libvirt/qemu")
SYSTEM_QEMU_LOGS = Path("/var/log/libvirt/qemu")
#: Where the system daemon keeps each running domain's state XML and pid file.
SYSTEM_STATE = Path("/run/libvirt/qemu")
STATE_DIRS = (Path("/var/log/libvirt"), Path("/var/lib/libvirt"), Path("/var/cache/libvirt"))
QEMU_USER = "libvirt-qemu"
#: What ``qemu.conf`` must say for guests to start here (and why, in the module doc).
QEMU_SETTINGS = {"user": "root", "group": "root", "security_driver": "none", "stdio_handler": "file"}
MARKER = "# written by labkit"
#: Seconds without clients or running guests after which a labkit-started daemon exits.
IDLE_TIMEOUT_S = 600


class DaemonError(LabkitError):
    """The libvirt daemon cannot be reached, configured, started or stopped."""


@dataclass(frozen=True)
class Daemon:
    """The system daemon as labkit finds (or leaves) it."""

    uri: str
    running: bool
    pid: int | None
    started_by_labkit: bool
    idle_timeout_s: int | None  # only known for a daemon labkit started
    detail: str  # one sentence for the learner


def quiet_libvirt() -> None:
    """Stop libvirt printing every error to stderr: labkit raises them as exceptions instead."""
    import libvirt  # here, not at the top: `labkit cleanup` imports this module where libvirt-python is missing

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def probe(uri: str = SYSTEM_URI) -> str | None:
    """None when a read-only connection to ``uri`` works, else libvirt's reason.

    Read-only, so unprivileged users can ask whether a system daemon runs.
    """
    import libvirt

    quiet_libvirt()
    try:
        conn = libvirt.openReadOnly(uri)
    except libvirt.libvirtError as exc:
        return exc.get_error_message() or str(exc)
    try:
        conn.getURI()
    finally:
        conn.close()
    return None


def missing_settings(conf_text: str) -> dict[str, str]:
    """The :data:`QEMU_SETTINGS` that a ``qemu.conf`` text does not set to the needed value."""
    active: dict[str, str] = {}
    for line in conf_text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.strip().startswith("#"):
            active[key.strip()] = value.split("#")[0].strip().strip('"')
    return {k: v for k, v in QEMU_SETTINGS.items() if active.get(k) != v}


def qemu_conf_text() -> str:
    """The ``qemu.conf`` labkit writes when there is none."""
    lines = [f"{MARKER}: libvirtd for KVM Lab on a host without systemd.",
             "# Guests run as root with no SELinux/AppArmor labels; serial output goes to files.",
             "# Delete this file to let your distribution's defaults apply again."]
    lines += [f'{key} = "{value}"' for key, value in QEMU_SETTINGS.items()]
    return "\n".join(lines) + "\n"


def configure(conf: Path = QEMU_CONF) -> tuple[str, ...]:
    """Make this host able to run ``libvirtd`` for ``qemu:///system``; say what was done.

    An existing ``qemu.conf`` that labkit did not write is never changed: if
    it lacks a setting, the error names the lines to add.
    """
    _require_root("configure the system libvirt daemon")
    done: list[str] = []
    try:
        pwd.getpwnam(QEMU_USER)
    except KeyError:
        try:  # a group of that name left without its user (userdel keeps a group others use): join it
            grp.getgrnam(QEMU_USER)
            group = ["--gid", QEMU_USER]
        except KeyError:
            group = []
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/var/lib/libvirt",
                        "--shell", "/usr/sbin/nologin", *group, QEMU_USER], check=True, capture_output=True)
        done.append(f"created system user {QEMU_USER}")
    for path in STATE_DIRS:
        if not path.is_dir():
            path.mkdir(parents=True)
            done.append(f"created {path}")
    text = conf.read_text() if conf.exists() else None
    if text is None or (text.startswith(MARKER) and missing_settings(text)):
        conf.parent.mkdir(parents=True, exist_ok=True)
        tmp = conf.with_suffix(".labkit-tmp")
        tmp.write_text(qemu_conf_text())
        tmp.replace(conf)
        done.append(f"wrote {conf}")
    elif missing := missing_settings(text):
        lines = "; ".join(f'{k} = "{v}"' for k, v in missing.items())
        raise DaemonError(f"{conf} exists (not written by labkit) and lacks settings guests need here: {lines}",
                          f"add these lines to {conf}, or start your distribution's libvirt service "
                          "(e.g. sudo systemctl start libvirtd) instead of letting labkit start one")
    return tuple(done)


def status(uri: str = SYSTEM_URI) -> Daemon:
    """Whether a daemon answers on ``uri``, its pid, and whether labkit started it."""
    reason = probe(uri)
    pid = _pid()
    mine = _marker()
    started = mine is not None and pid == mine["pid"]
    timeout = mine["idle_timeout_s"] if mine is not None and started else None
    if reason is None:
        who = (Phrase(N_("started by labkit, exits after {timeout} s idle"), timeout=timeout) if started and timeout
               else Phrase(N_("started by labkit")) if started else Phrase(N_("not started by labkit")))
        return Daemon(uri, True, pid, started, timeout,
                      Phrase(N_("libvirtd answers on {uri} (pid {pid}, {who})"), uri=uri, pid=pid, who=who))
    return Daemon(uri, False, pid, False, None,
                  Phrase(N_("no libvirtd answers on {uri}: libvirt says “{reason}”"), uri=uri, reason=reason))


def start(idle_timeout_s: int = IDLE_TIMEOUT_S, ready_timeout_s: float = 60.0) -> Daemon:
    """Start ``libvirtd`` for ``qemu:///system`` unless one already answers; wait until it works.

    ``idle_timeout_s`` = 0 keeps it running until :func:`stop`.  Concurrent
    callers (a notebook and a test) are serialised by a lock file, so only
    one daemon is ever started.
    """
    with _lock():
        current = status()
        if current.running:
            return current
        _require_root("start the system libvirt daemon (qemu:///system)")
        if not LIBVIRTD.exists():
            raise MissingToolError(f"{LIBVIRTD} is not installed",
                                   "sudo apt-get install libvirt-daemon libvirt-daemon-driver-qemu "
                                   "(./kvmlab setup does it)")
        configure()
        log_start = LOG_FILE.stat().st_size if LOG_FILE.exists() else 0
        cmd = [str(LIBVIRTD), "--daemon"] + (["--timeout", str(idle_timeout_s)] if idle_timeout_s else [])
        returncode, stderr = _launch(cmd)
        deadline = time.monotonic() + ready_timeout_s
        while (reason := probe()) is not None and time.monotonic() < deadline:
            if returncode != 0 or _pid() is None:
                break  # it died: no point waiting
            time.sleep(0.05)
        if reason is not None:
            raise DaemonError(f"libvirtd did not come up on {SYSTEM_URI} ({reason}); {' '.join(cmd)} exited "
                              f"{returncode}. {stderr.strip()} Its log says: {_log_errors(log_start)}",
                              f"read {LOG_FILE}; `labkit virt up` retries")
        pid = _pid()
        assert pid is not None  # probe() answered, so the pid file is there
        _marker_path().write_text(json.dumps({"pid": pid, "create_time": psutil.Process(pid).create_time(),
                                              "idle_timeout_s": idle_timeout_s}))
    return status()


def _launch(cmd: list[str]) -> tuple[int | None, str]:
    """Run ``libvirtd --daemon`` under :mod:`labkit.subreaper`, in a session of its own: its exit status, stderr.

    The subreaper outlives this call (``setsid --fork``), as the daemon does,
    and reaps each QEMU the moment it exits: PID 1 here does so only every
    ~2 s, and libvirt holds a domain's lock until its QEMU is gone.  None: the
    subreaper itself failed (its stderr says why).
    """
    proc = subprocess.run(["setsid", "--fork", sys.executable, "-m", "labkit.subreaper", *cmd],
                          capture_output=True, text=True)  # EOF: the subreaper closed them once libvirtd forked
    status = next((int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("exit ")), None)
    return status, proc.stderr


def stop(timeout_s: float = 30.0) -> Daemon:
    """Stop the daemon labkit started; refuse while it still runs guests.

    Killing ``libvirtd`` does not stop its QEMU processes (a restarted
    daemon reconnects to them), so guests must be destroyed first:
    ``labkit virt down`` destroys labkit's own, and names any others.
    """
    current = status()
    if not current.running and current.pid is None:
        return current
    if not current.started_by_labkit:
        raise DaemonError(f"the running libvirtd (pid {current.pid}) was not started by labkit, "
                          "so labkit leaves it alone",
                          "stop it the way it was started (e.g. sudo systemctl stop libvirtd)")
    _require_root("stop the system libvirt daemon")
    active = _active_domains()
    if active:
        raise DaemonError(f"libvirtd still runs these guests: {', '.join(active)}; stopping it would leave "
                          "their QEMU processes running without a manager",
                          "labkit virt cleanup (labkit's own guests), virsh destroy NAME (others)")
    assert current.pid is not None
    proc = psutil.Process(current.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    _marker_path().unlink(missing_ok=True)
    return status()


# --------------------------------------------------------------------------- per-user session daemons


def _xdg(env: Mapping[str, str] | None, var: str, default: str) -> Path:
    if env is None:
        env, home = os.environ, Path.home()
    else:
        home = Path(env.get("HOME", "/nonexistent"))
    return Path(env.get(var) or home / default)


def session_definitions(env: Mapping[str, str] | None = None) -> Path:
    """Where a user's session daemon keeps persistent domain XML: ``$XDG_CONFIG_HOME/libvirt/qemu``.

    ``env`` is that user's environment (default: this process's).
    """
    return _xdg(env, "XDG_CONFIG_HOME", ".config") / "libvirt" / "qemu"


def session_qemu_logs(env: Mapping[str, str] | None = None) -> Path:
    """Where a user's session daemon writes each domain's QEMU log: ``$XDG_CACHE_HOME/libvirt/qemu/log``."""
    return _xdg(env, "XDG_CACHE_HOME", ".cache") / "libvirt" / "qemu" / "log"


def qemu_state_dir(uri: str, env: Mapping[str, str] | None = None) -> Path:
    """Where the daemon of ``uri`` keeps each running domain's state (``NAME.xml``, ``NAME.pid``).

    ``qemu:///system``: ``/run/libvirt/qemu``; a session daemon:
    ``$XDG_RUNTIME_DIR/libvirt/qemu/run``, else ``~/.cache/libvirt/qemu/run``.
    """
    if uri.startswith("qemu:///system"):
        return SYSTEM_STATE
    env = os.environ if env is None else env
    base = Path(env["XDG_RUNTIME_DIR"]) if env.get("XDG_RUNTIME_DIR") else _xdg(env, "XDG_CACHE_HOME", ".cache")
    return base / "libvirt" / "qemu" / "run"


def remove_stale_state(uri: str, name: str) -> list[Path]:
    """Remove the state files of domain ``name`` that no daemon will: its QEMU (the pid they name) is dead.

    A daemon killed while it created the domain leaves them; the daemon that
    starts next reads them, and when it finds QEMU already gone before it
    could take the domain over, they stay.  Files of a QEMU that still runs
    are never touched.  Returns what was removed.
    """
    state = qemu_state_dir(uri)
    pid_file = state / f"{name}.pid"
    with contextlib.suppress(OSError, ValueError):
        if psutil.pid_exists(int(pid_file.read_text().strip())):
            return []
    removed = []
    with contextlib.suppress(OSError):  # its private dirs (monitor socket, key), named in the state XML
        monitor = re.search(r"<monitor path='([^']+)'", (state / f"{name}.xml").read_text())
        lib = Path(monitor[1]).parent if monitor else None
        if lib is not None and lib.name.startswith("domain-"):
            for folder in (lib, lib.parent.parent / "channel" / "target" / lib.name):
                if folder.is_dir() and not folder.is_symlink():
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
    for path in (state / f"{name}.xml", pid_file):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


@dataclass(frozen=True)
class SessionDaemon:
    """A per-user ``libvirtd`` serving someone's ``qemu:///session`` (libvirt autostarts one per user).

    On a shared host each student has one while their guests run (it exits
    after 120 s idle); root can reach it through its socket to see and
    remove that student's lab domains.
    """

    pid: int
    uid: int
    user: str  # runtime.user_name(uid)
    socket: Path  # its libvirt-sock
    qemu_logs: Path  # where it writes each domain's QEMU log

    @property
    def uri(self) -> str:
        """A URI that reaches this very daemon, also from another user (root)."""
        return f"qemu+unix:///session?socket={self.socket}"


def session_daemons(uid: int | None = None) -> tuple[SessionDaemon, ...]:
    """The running per-user daemons of every non-root user (or only of ``uid``) that this process can inspect.

    Found by process, not by guessing paths: the socket is whatever the
    daemon listens on (``$XDG_RUNTIME_DIR/libvirt`` or ``~/.cache/libvirt``),
    and its log dir follows the daemon's own environment.
    """
    found = []
    for proc in psutil.process_iter(["name", "uids"]):
        uids = proc.info["uids"]
        if proc.info["name"] != "libvirtd" or uids is None or uids.real == 0 or uid not in (None, uids.real):
            continue
        try:
            env = proc.environ()
            sockets = [c.laddr for c in proc.net_connections("unix") if str(c.laddr).endswith("/libvirt-sock")]
        except psutil.Error:  # another user's daemon, seen by a non-root user; or it just exited
            continue
        if sockets:
            found.append(SessionDaemon(proc.pid, uids.real, runtime.user_name(uids.real), Path(sockets[0]),
                                       session_qemu_logs(env)))
    return tuple(found)


# --------------------------------------------------------------------------- helpers


def _require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise AccessDeniedError(f"only root can {action}",
                                "use qemu:///session (labkit's default for unprivileged users: unset "
                                "LABKIT_VIRT_URI), or run: sudo .venv/bin/labkit virt up")


def _pid() -> int | None:
    """The pid in libvirtd's pid file, if that process is alive."""
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if psutil.pid_exists(pid) else None


def _marker_path() -> Path:
    return runtime.run_dir() / "libvirtd.json"


def _marker() -> dict | None:
    """What labkit recorded when it started the daemon, if that very process still runs."""
    try:
        data = json.loads(_marker_path().read_text())
        if psutil.Process(data["pid"]).create_time() == data["create_time"]:
            return data
    except (OSError, ValueError, KeyError, psutil.Error):
        pass
    return None


@contextmanager
def _lock() -> Iterator[None]:
    with open(runtime.run_dir() / "libvirtd.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _log_errors(offset: int, keep: int = 3) -> str:
    """The last error lines libvirtd logged since ``offset`` (the dmidecode/dbus noise excluded)."""
    try:
        with open(LOG_FILE, errors="replace") as fh:
            fh.seek(offset)
            lines = [l.strip() for l in fh if " error : " in l]
    except OSError:
        return f"(no {LOG_FILE})"
    noise = ("dmidecode", "GDBus", "udevGetDMIData", "dnsmasq")
    useful = [l.split(" error : ", 1)[1] for l in lines if not any(n in l for n in noise)]
    return " | ".join(useful[-keep:]) or "(no errors logged)"


def _active_domains() -> list[str]:
    import libvirt

    quiet_libvirt()
    conn = libvirt.openReadOnly(SYSTEM_URI)
    try:
        return sorted(d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
    finally:
        conn.close()

