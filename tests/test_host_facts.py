"""No output nbval compares holds a host fact: kernel release, module paths, CPU model, host name, memory.

Two nets for one class of mistake (issue 22: 01's license line held ``/lib/modules/6.18.44-fc-v657/…`` and failed
on every machine with another kernel build):
- a lint over both editions' committed outputs, for the shapes of host facts and for this host's own values;
- nbval itself runs every kernel on a fake host (``tests/fakehost.py``, wired in ``conftest.py``); the last test
  here proves the kernels really see it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
from pathlib import Path

import psutil
import pytest

import fakehost

TOP = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((TOP / "notebooks").glob("*.ipynb")) + sorted((TOP / "notebooks" / "ko").glob("*.ipynb"))

#: Shapes of host facts, whatever host executed the notebook.
SHAPES = {
    "a kernel release": re.compile(r"\b\d+\.\d+\.\d+-\d*[a-z][\w.+~-]*", re.I),  # 6.1.0-57-cloud-amd64, 6.18.44-fc-v657
    "a kernel module path": re.compile(r"/lib/modules/"),
    "a CPU model": re.compile(r"Intel\(R\)|\bAMD (EPYC|Ryzen|Opteron)|\bXeon\b|Core\(TM\)|\d\.\d+ ?GHz"),
}


def this_hosts_facts() -> dict[str, str]:
    """This machine's own values, where they are specific enough to find in text."""
    total = psutil.virtual_memory().total
    facts = {"this host's kernel release": platform.release(),
             "this host's memory": f"{total / 2**30:.1f} GiB",
             "this host's memory in MiB": f"{total // 2**20} MiB"}
    if len(socket.gethostname()) >= 6:  # a name like "vm" is a word of the lessons too
        facts["this host's name"] = socket.gethostname()
    model = re.search(r"(?m)^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text())
    if model:
        facts["this host's CPU model"] = model.group(1).strip()
    return facts


def compared_outputs(notebook: dict) -> list[tuple[str, str]]:
    """(cell id, text) of every output nbval compares: code cells not tagged nbval-ignore-output/nbval-skip."""
    found = []
    for cell in notebook["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or {"nbval-ignore-output", "nbval-skip"} & set(tags):
            continue
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")] + [v for k, v in output.get("data", {}).items() if k.startswith("text/")]
            found += [(cell.get("id", "?"), "".join(t) if isinstance(t, list) else t) for t in texts if t]
    return found


def host_facts_in(notebook: dict, facts: dict[str, str]) -> list[str]:
    """One line per host fact found in a compared output: the cell, what it is, and the text around it."""
    found = []
    patterns = {**SHAPES, **{what: re.compile(re.escape(value)) for what, value in facts.items()}}
    for cell_id, text in compared_outputs(notebook):
        for what, pattern in patterns.items():
            for match in pattern.finditer(text):
                found.append(f"cell {cell_id}: {what} ({text[max(0, match.start() - 40):match.end() + 20]!r})")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(TOP / "notebooks")))
def test_no_compared_output_holds_a_host_fact(path: Path) -> None:
    found = host_facts_in(json.loads(path.read_text()), this_hosts_facts())
    assert not found, (f"{path.name}: outputs nbval compares hold host facts — print them in a cell tagged "
                       f"nbval-ignore-output, or leave them out:\n  " + "\n  ".join(found))


def test_the_lint_finds_host_facts_and_spares_ignored_cells() -> None:
    def cell(text: str, tags: list[str]) -> dict:
        return {"cell_type": "code", "id": "c", "metadata": {"tags": tags},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": [text]}]}
    facts = {"this host's name": "build-host-42"}
    leaky = {"cells": [cell("no /lib/modules/6.18.44-fc-v1300/modules.builtin.modinfo\n", []),
                       cell("model: Intel(R) Xeon(R) Processor\n", []), cell("ran on build-host-42\n", [])]}
    found = host_facts_in(leaky, facts)
    assert {line.split(" (")[0] for line in found} == {
        "cell c: a kernel release", "cell c: a kernel module path", "cell c: a CPU model", "cell c: this host's name"}
    ignored = {"cells": [cell(c["outputs"][0]["text"][0], ["nbval-ignore-output"]) for c in leaky["cells"]]}
    assert host_facts_in(ignored, facts) == []
    # the lessons' own numbers are no host facts
    assert host_facts_in({"cells": [cell("✔ the guest has 128 MiB and 1 vCPU; KVM_GET_API_VERSION → 12\n", [])]},
                         facts) == []


@pytest.mark.skipif(fakehost.available() is not None, reason=fakehost.available() or "")
def test_nbval_kernels_run_on_the_fake_host() -> None:
    km = fakehost.FakeHostKernelManager(kernel_name="python3")
    km.start_kernel()
    try:
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            seen: list[str] = []
            kc.execute_interactive(
                "import os, socket, psutil\n"
                "print(open('/proc/sys/kernel/osrelease').read().strip(), socket.gethostname(), os.cpu_count(), "
                "psutil.virtual_memory().total // 1024, open('/proc/cpuinfo').read().count('model name'))",
                output_hook=lambda msg: seen.append(msg["content"].get("text", "")), timeout=120)
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    assert "".join(seen).split() == [fakehost.RELEASE, fakehost.HOSTNAME, str(fakehost.CPUS),
                                     str(fakehost.MEM_TOTAL_KB), str(fakehost.CPUS)]
    assert open("/proc/sys/kernel/osrelease").read().strip() != fakehost.RELEASE  # this process: the real host
    assert os.cpu_count() is not None
