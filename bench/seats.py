"""How many students fit on this host: the measured memory of one student session, part by part.

Run by hand, as root (it makes a throwaway account, ``labkit-bench``, and
removes it again):

    .venv/bin/python bench/seats.py            # 3 rounds
    .venv/bin/python bench/seats.py -n 5

Each round, as the unprivileged account (so its guests run the way a hub
student's do: TCG without /dev/kvm access, its own ``qemu:///session``
libvirtd): a JupyterLab server is started and measured once it answers;
then ``labkit run 04 05`` runs the two guest notebooks while every process
of the account is sampled, and the peak resident memory (RSS) of each part
is kept — the notebook kernel, QEMU with the 04/05 guest, the session
libvirtd.  The papermill driver is left out (a student working in
JupyterLab has none).  It prints the medians, a student's sum, and the seats
that fit in this host's memory: all of it less 2 GiB for the system and
the hub, and what is available right now.  RSS counts shared pages (the
venv's libraries) in every process, so the sum is an upper bound.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import psutil

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from labkit import doctor, host  # noqa: E402
from labkit.hub import accounts  # noqa: E402

USER = "labkit-bench"
PARTS = ("JupyterLab server", "notebook kernel", "QEMU + tiny guest", "libvirtd (session)")
SYSTEM_RESERVE_MIB = 2048


def part_of(argv: list[str]) -> str | None:
    text = " ".join(argv)
    if "ipykernel_launcher" in text:
        return "notebook kernel"
    if argv and "qemu-system" in argv[0]:
        return "QEMU + tiny guest"
    if argv and argv[0].endswith("libvirtd"):
        return "libvirtd (session)"
    if "jupyter-lab" in text or "jupyterhub-singleuser" in text:
        return "JupyterLab server"
    return None


class Sampler(threading.Thread):
    """Peak RSS per part of everything ``uid`` runs (the largest single process of each part)."""

    def __init__(self, uid: int) -> None:
        super().__init__(daemon=True)
        self.uid = uid
        self.peak: defaultdict[str, int] = defaultdict(int)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for proc in psutil.process_iter(["uids", "cmdline", "memory_info"]):
                if proc.info["uids"] and proc.info["uids"].real == self.uid and proc.info["memory_info"]:
                    part = part_of(proc.info["cmdline"] or [])
                    if part:
                        self.peak[part] = max(self.peak[part], proc.info["memory_info"].rss >> 20)
            self._done.wait(0.2)

    def stop(self) -> dict[str, int]:
        self._done.set()
        self.join()
        return dict(self.peak)


def as_user(account: accounts.Account, *argv: str) -> list[str]:
    env = [f"HOME={account.home}", f"PATH={TOP / '.venv/bin'}:/usr/bin:/bin", "LANG=C.UTF-8"]
    return ["runuser", "-u", account.name, "--", "env", "-i", *env, *argv]


def one_round(account: accounts.Account) -> dict[str, int]:
    sampler = Sampler(account.uid)
    sampler.start()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lab = subprocess.Popen(as_user(account, "jupyter", "lab", "--no-browser", f"--port={port}",
                                   "--ServerApp.token=bench", f"--notebook-dir={account.lab}"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token=bench", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        time.sleep(2)  # extensions load after the first answer
        with tempfile.TemporaryDirectory(dir=account.home) as out:
            os.chown(out, account.uid, account.gid)
            run = subprocess.run(as_user(account, "labkit", "run", str(account.lab / "04_qemu.ipynb"),
                                         str(account.lab / "05_libvirt.ipynb"), "-p", "boots_per_accel", "1",
                                         "--out", out, "--no-progress"), capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"labkit run failed:\n{run.stdout}\n{run.stderr}")
    finally:
        lab.terminate()
        lab.wait(30)
        subprocess.run(as_user(account, "labkit", "cleanup", "--force"), capture_output=True)
    return sampler.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it creates (and removes) the account labkit-bench")
    account = accounts.ensure(USER)
    try:
        accounts.provide_notebooks(account, TOP / "notebooks")
        rounds = [one_round(account) for _ in range(args.rounds)]
    finally:
        for proc in [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == account.uid]:
            proc.kill()
        subprocess.run(["userdel", "--remove", USER], capture_output=True)
    median = {part: int(statistics.median(r.get(part, 0) for r in rounds)) for part in PARTS}
    per_seat = sum(median.values())
    total = psutil.virtual_memory().total >> 20
    available = psutil.virtual_memory().available >> 20
    estimate = doctor.seat_estimate(host.inspect())
    print(f"{args.rounds} rounds of notebooks 04 + 05 as an unprivileged user; peak RSS per part, MiB "
          f"(median [min-max]):")
    for part in PARTS:
        values = [r.get(part, 0) for r in rounds]
        print(f"  {part:<20} {median[part]:>5}  [{min(values)}-{max(values)}]   doctor's estimate "
              f"{estimate.parts_mib.get(part, '?')}")
    print(f"  {'one student':<20} {per_seat:>5}          doctor's estimate {estimate.per_seat_mib} "
          f"(measured/estimate = {per_seat / estimate.per_seat_mib:.2f})")
    print(f"seats by memory: {(total - SYSTEM_RESERVE_MIB) // per_seat} on this host's {total} MiB "
          f"(less {SYSTEM_RESERVE_MIB} MiB for the system and the hub); {available // per_seat} in the "
          f"{available} MiB available right now (other work is running); {os.cpu_count()} CPUs: that many guests "
          f"boot at the same moment without waiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
