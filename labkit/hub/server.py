"""The JupyterHub process of a lab hub: start it, wait until it answers, stop it so that nothing is left.

JupyterHub, run as root from the lab's venv, starts configurable-http-proxy
itself and, on SIGTERM, stops every student's server (each stop runs the
lab spawner's clean-up) and then the proxy.  :func:`running` owns that
process like any other labkit resource: it is stopped on success, error,
interrupt and interpreter exit, and :func:`leftovers` says what, if
anything, outlived it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil

from labkit import runtime
from labkit.errors import LabkitError, MissingToolError
from labkit.hub import accounts, config
from labkit.hub.plan import HubPlan


class HubStartError(LabkitError):
    """JupyterHub exited or did not answer in time; carries the end of its log."""


def log_file(plan: HubPlan) -> Path:
    return plan.state_dir / "jupyterhub.log"


def _check_installed(plan: HubPlan) -> None:
    needed = [(plan.venv / "bin/jupyterhub", "./kvmlab hub (or: bash scripts/setup.sh --hub)"),
              (plan.proxy, "./kvmlab hub (or: bash scripts/setup.sh --hub)")]
    if plan.cluster == "slurm":
        needed.append((plan.venv / "bin/batchspawner-singleuser", "bash scripts/setup.sh --cluster"))
    if plan.cluster == "slurm" and shutil.which("sbatch") is None:
        raise MissingToolError("Slurm's sbatch is not installed on the hub's host",
                               "bash scripts/setup.sh --cluster (apt: slurm-client; the hub submits students' jobs)")
    for path, fix in needed:
        if not path.exists():
            raise MissingToolError(f"{path} is not installed", fix)


def answers(plan: HubPlan) -> bool:
    try:
        with urllib.request.urlopen(f"{plan.url}/hub/api/", timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def running(plan: HubPlan, timeout: float = 120) -> Iterator[subprocess.Popen]:
    """JupyterHub for ``plan``, answering on :attr:`HubPlan.url`; stopped (servers, proxy) on exit."""
    _check_installed(plan)
    config_file = config.write(plan)
    log = log_file(plan)
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(plan.venv / "bin/jupyterhub"), "-f", str(config_file)], cwd=plan.state_dir,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={"PATH": f"{plan.venv / 'bin'}:"
                                             "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                     "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/root")})
    token = runtime.release_at_exit(lambda: stop(proc, plan))
    try:
        deadline = time.monotonic() + timeout
        while not answers(plan):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with status {proc.returncode}" if proc.poll() is not None else \
                    f"did not answer on {plan.url} within {timeout:.0f} s"
                raise HubStartError(f"JupyterHub {why}; the end of {log}:\n{_tail(log)}",
                                    f"read {log}; is port {plan.port} free?")
            time.sleep(0.3)
        yield proc
    finally:
        stop(proc, plan)
        runtime.forget(token)


def stop(proc: subprocess.Popen, plan: HubPlan, timeout: float = 90) -> int:
    """SIGTERM the hub (it stops the students' servers and the proxy), SIGKILL if it hangs; its exit status.

    Then the proxy, if the hub left it: JupyterHub starts configurable-http-proxy
    in a session of its own and stops it only on a clean shutdown, so a hub
    that failed while starting (or was killed) leaves it listening.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stop_proxy(plan)
    return proc.returncode


def proxy_pid_file(plan: HubPlan) -> Path:
    """Where JupyterHub writes the proxy's pid (``ConfigurableHTTPProxy.pid_file`` in :mod:`.config`)."""
    return plan.state_dir / config.PROXY_PID_FILE


def stop_proxy(plan: HubPlan, timeout: float = 10) -> int | None:
    """Stop the proxy a dead hub left (the pid in its pid file, if that is still the proxy); its pid, or None."""
    pid_file = proxy_pid_file(plan)
    try:
        proc = psutil.Process(int(pid_file.read_text().strip()))
        is_proxy = any("configurable-http-proxy" in arg for arg in proc.cmdline())
    except (OSError, ValueError, psutil.Error):
        is_proxy = False
    if is_proxy:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
            if psutil.wait_procs([proc], timeout=timeout)[1]:
                proc.kill()
                psutil.wait_procs([proc], timeout=timeout)
    with contextlib.suppress(OSError):
        pid_file.unlink()
    return proc.pid if is_proxy else None


def leftovers(plan: HubPlan) -> list[str]:
    """What of the hub outlived it: the proxy, JupyterHub, and any process of a student (server, kernel, QEMU).

    A zombie is not counted: it is dead and holds nothing but its pid until
    its new parent (init, which may reap late) collects it.
    """
    uids = {a.uid: a.name for a in map(accounts.lookup, plan.students) if a is not None}
    proxy = {str(plan.proxy), os.path.realpath(plan.proxy)}  # node runs it by the link's name or its target's
    found = []
    for proc in psutil.process_iter(["pid", "uids", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.info["pid"] == os.getpid():  # not `labkit hub` itself
            continue
        argv = proc.info["cmdline"] or []
        uid = proc.info["uids"].real if proc.info["uids"] else None
        if uid in uids:
            found.append(f"{uids[uid]}'s process {proc.info['pid']}: {' '.join(argv)[:120]}")
        elif any(str(plan.state_dir) in arg or arg in proxy for arg in argv):
            found.append(f"hub process {proc.info['pid']}: {' '.join(argv)[:120]}")
    for uid, name in uids.items():
        run_dir = runtime.run_dir_of(runtime.user_name(uid))
        if run_dir.exists():
            found.append(f"{name}'s run dir {run_dir}")
    return found
