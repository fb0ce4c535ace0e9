"""Record this host into a directory, so it can be inspected elsewhere (``labkit host --record DIR``).

The recording is files (``proc``, ``sys``, the lines of the kernel log the
lab reads) plus ``host.json``: device nodes, the ``/dev/kvm`` probe, CPUID
leaves, an MSR, and the manifest ``recorded`` — every path listed there was
recorded, so one the tree lacks was absent on the host (format 2).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from labkit.host.running_kernel import KVM_MODULES
from labkit.host.sources import RECORDED_FILES, LiveSource

#: Kernel-log lines the lab reads (hypervisor detection, VT-x/AMD-V state, EL2); the rest stays private.
DMESG_LINES = re.compile(r"Hypervisor detected|Booting paravirtualized kernel|\bDMI: |disabled by bios|"
                         r"disabled \(by BIOS\)|no hardware support|kvm|KVM|started at EL|Hyp mode|"
                         r"Xen version|Hyper-V", re.IGNORECASE)


def record(dest: Path | str, root: Path | str = "/") -> Path:
    """Record the host at ``root`` into ``dest``; instructors collect these from lab machines."""
    src = LiveSource(root)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    recorded = list(RECORDED_FILES)
    for rel in RECORDED_FILES:
        text = src.read(rel)
        if text is not None:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_text(text)
    for name in KVM_MODULES:
        mod = Path(root) / "sys/module" / name
        recorded.append(f"sys/module/{name}")
        for rel in ("initstate", "parameters/nested"):
            if (mod / rel).exists():
                target = dest / "sys/module" / name / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(mod / rel, target)
        if mod.exists() and not (dest / "sys/module" / name).exists():
            (dest / "sys/module" / name).mkdir(parents=True)
            (dest / "sys/module" / name / "uevent").write_text("")  # git keeps no empty dirs
    dmesg = src.read("dmesg")
    if dmesg is not None:
        (dest / "dmesg").write_text("".join(line + "\n" for line in dmesg.splitlines() if DMESG_LINES.search(line)))
    meta: dict = {"format": 2, "machine": os.uname().machine, "recorded": recorded + ["dev/kvm"],
                  "devices": {}, "cpuid": {}, "groups": ["kvm"] if src.group_exists("kvm") else []}
    node = src.device("kvm")
    if node:
        entry = {"type": node.kind, "mode": f"{node.mode:04o}", "uid": node.uid, "gid": node.gid,
                 "owner": node.owner, "group": node.group}
        if node.rdev:
            entry["rdev"] = f"{node.rdev[0]}:{node.rdev[1]}"
        if node.target:
            entry["target"] = node.target
        meta["devices"]["kvm"] = entry
        if node.is_kvm:
            probe = src.probe_kvm()
            meta["kvm_probe"] = {k: v for k, v in asdict(probe).items() if v not in (None, {})}
    for leaf in (0x1, 0x40000000):
        regs = src.cpuid(leaf)
        if regs:
            meta["cpuid"][f"{leaf:#x}"] = list(regs)
    feature_control = src.msr(0x3A)
    if feature_control is not None:
        meta["msr"] = {"0x3a": feature_control}
    (dest / "host.json").write_text(json.dumps(meta, indent=2) + "\n")
    return dest
