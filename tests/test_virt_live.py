"""Real guests on a real libvirt daemon: define, boot (TCG here), observe, tear down.

As root (CI) this uses ``qemu:///system`` and :func:`labkit.virt.connect`
starts ``libvirtd`` itself when none runs — no manual step.  One test also
runs the tiny guest as an unprivileged user on ``qemu:///session``.
Every test checks that no domain and no QEMU process is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from pathlib import Path

import psutil
import pytest

from labkit import host, images, libvirtd, runtime, virt
from labkit.exercises import virt as exercises

TOP = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def conn():
    with virt.connect() as c:
        yield c


@pytest.fixture(scope="module")
def image() -> images.GuestImage:
    return images.tiny_guest()


@pytest.fixture(scope="module")
def domain_type(conn: virt.Connection) -> str:
    return conn.domain_type().type


def guest(image: images.GuestImage, domain_type: str, name: str, **kw) -> virt.DomainSpec:
    unique = f"{name}-{os.getpid()}-{time.monotonic_ns() % 100000}"
    return virt.DomainSpec.for_image(unique, image, domain_type=domain_type, **kw)


def assert_gone(conn: virt.Connection, name: str) -> None:
    assert name not in {d.name() for d in conn.raw.listAllDomains()}, f"domain {name} was left defined"
    assert virt.qemu_pids(name) == (), f"a QEMU process of {name} was left running"
    assert not virt.qemu_log_path(conn.choice.uri, name).exists(), f"libvirt's log of {name} was left behind"


def assert_none_named(conn: virt.Connection, stem: str) -> None:
    """No domain, and no QEMU process, whose name starts with ``stem`` (any process's suffix)."""
    left = [d.name() for d in conn.raw.listAllDomains() if d.name().startswith(stem)]
    assert not left, f"domains {left} were left defined"
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        assert not any(a.startswith(f"guest={stem}") for a in argv), f"QEMU {proc.pid} of {stem}* left running"


def test_domain_type_follows_the_host(conn: virt.Connection, domain_type: str) -> None:
    verdict = host.inspect().verdict
    offered = conn.capabilities().domain_types()
    assert "qemu" in offered
    assert domain_type == ("kvm" if verdict.boots_linux and "kvm" in offered else "qemu")
    # libvirt offers kvm where its daemon (root's, or this user's session one) can open /dev/kvm; labkit may
    # still decline it (verdict.boots_linux above)
    assert ("kvm" in offered) is os.access("/dev/kvm", os.R_OK | os.W_OK)
    described = conn.domain_capabilities(domain_type)
    assert described.virt_type == domain_type and described.max_vcpus >= 1
    assert described.emulator.endswith("qemu-system-x86_64") and described.machine.startswith("pc-")


def test_boot_observe_and_tear_down(conn: virt.Connection, image, domain_type: str) -> None:
    """One boot covers the whole life: define, start, pause, save/restore, report, poweroff, undefine."""
    dom = conn.define(guest(image, domain_type, "life"))
    with dom:
        assert dom.state == "shut off" and virt.qemu_pids(dom.name) == ()  # defined: no QEMU yet
        dom.start()
        dom.suspend()
        pids = virt.qemu_pids(dom.name)
        assert len(pids) == 1 and dom.state == "paused"
        stats = dom.stats()
        before = stats.vcpu_time_ns
        assert stats.rss_kib > 0 and stats.memory_kib > 0  # also without a balloon device, libvirt tells both
        time.sleep(0.3)
        assert dom.stats().vcpu_time_ns == before  # paused vCPUs get no CPU time; the process stays
        with pytest.raises(libvirtd.DaemonError):  # never stop a daemon with guests on it
            libvirtd.stop()
        dom.resume()
        with pytest.raises(virt.VirtError, match="disk"):  # internal snapshots live in qcow2 disks
            dom.snapshot("s1")
        saved = dom.save()
        assert dom.state == "shut off" and saved.stat().st_size > 1 << 20 and virt.qemu_pids(dom.name) == ()
        dom.restore(saved)
        assert dom.state == "running" and virt.qemu_pids(dom.name) not in ((), pids)  # a new QEMU goes on
        report = dom.wait_for_report(timeout=120)
        assert report is not None
        dom.wait_for_event("stopped", "shutdown", timeout=60)  # the guest powered itself off (ACPI)
        assert dom.state == "shut off" and dom.name in conn.domains()  # still defined: persistent
        argv = dom.qemu_command_line()
        assert argv[argv.index("-kernel") + 1] == str(image.vmlinux or image.kernel)
        assert argv[argv.index("-accel") + 1] == ("tcg" if domain_type == "qemu" else "kvm")
        devices = " ".join(argv[i + 1] for i, a in enumerate(argv) if a == "-device")
        assert "usb" not in devices and "balloon" not in devices  # libvirt's defaults, asked away (issue 17)
        scratch = dom.console_log.parent
    assert_gone(conn, dom.name)
    assert not scratch.exists()
    seen = [(e.event, e.detail) for e in dom.events]
    expected = [("defined", "added"), ("started", "booted"), ("suspended", "paused"), ("resumed", "unpaused"),
                ("stopped", "saved"), ("started", "restored"), ("stopped", "shutdown"), ("undefined", "removed")]
    remaining = iter(seen)
    assert all(step in remaining for step in expected), seen  # in this order (libvirt adds a few more)
    assert 0 < dom.timeline["defined"] < dom.timeline["started"] < dom.timeline["report"]


@pytest.mark.parametrize("raised", [RuntimeError, KeyboardInterrupt])
def test_raise_mid_boot_leaves_no_domain_and_no_qemu(conn: virt.Connection, image, domain_type: str,
                                                     raised: type) -> None:
    with pytest.raises(raised):
        with conn.define(guest(image, domain_type, "raise")) as dom:
            dom.start()
            assert virt.qemu_pids(dom.name)  # QEMU is really running when the error comes
            raise raised("mid-boot")
    assert_gone(conn, dom.name)


def test_closing_the_connection_removes_its_domains(image, domain_type: str) -> None:
    with virt.connect() as other:
        dom = other.define(guest(image, domain_type, "conn-closed"))
        dom.start()
    with virt.connect() as check:
        assert_gone(check, dom.name)


def test_abandoned_domain_is_removed_at_exit(conn: virt.Connection, image, domain_type: str) -> None:
    """A script that never closes its domain (a notebook kernel shut down mid-boot) still cleans up."""
    name = guest(image, domain_type, "abandoned").name
    script = textwrap.dedent(f"""
        from labkit import images, virt
        conn = virt.connect()
        dom = conn.define(virt.DomainSpec.for_image({name!r}, images.tiny_guest(), domain_type={domain_type!r}))
        dom.start()
        print(dom.name, flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_gone(conn, proc.stdout.strip())


def labkit_virt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", "virt", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_status_and_up(conn: virt.Connection) -> None:
    status = labkit_virt("status")
    assert status.returncode == 0, status.stderr
    assert f"uri          {conn.choice.uri}" in status.stdout and "domain type" in status.stdout
    up = labkit_virt("up")
    assert up.returncode == 0 and f"connected to {conn.uri}" in up.stdout
    bad = labkit_virt("boot", "--memory", "1")
    assert bad.returncode == 2 and "labkit: error: memory_mib=1: must be a whole number" in bad.stderr
    assert "fix:" in bad.stderr


def test_cli_boot(conn: virt.Connection, domain_type: str) -> None:
    name = f"cli-{os.getpid()}"
    proc = labkit_virt("boot", "--name", name, "--vcpus", "2", "--cmdline")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "report: Linux " in out and "2 CPU(s)" in out
    assert f"-accel {'tcg' if domain_type == 'qemu' else 'kvm'}" in out and "-smp 2" in out
    assert "started (booted)" in out and "stopped (" in out and "undefined" not in out  # transient
    assert_none_named(conn, runtime.prefix() + name + "-")


@pytest.mark.skipif(os.geteuid() != 0, reason="running a guest as another (unprivileged) user needs root")
def test_unprivileged_user_gets_a_session_daemon(image) -> None:
    """What a student gets by default: qemu:///session, TCG, their own guest — and no qemu:///system."""
    home = Path(tempfile.mkdtemp(prefix="labkit-session-test-"))
    try:
        kernel = image.vmlinux or image.kernel  # root's cache is not readable by nobody: copy what it boots
        for path in (kernel, image.initrd):
            shutil.copy(path, home / path.name)
            (home / path.name).chmod(0o644)
        shutil.chown(home, "nobody")
        home.chmod(0o755)
        script = textwrap.dedent(f"""
            from pathlib import Path
            from labkit import virt
            try:
                virt.connect(virt.SYSTEM_URI)
            except virt.VirtAccessDeniedError as exc:
                print("system refused:", exc.fix)
            with virt.connect() as conn:
                print("uri:", conn.uri, "|", conn.choice.reason)
                dtype = conn.domain_type()
                with conn.define(virt.DomainSpec("session", Path({str(home / kernel.name)!r}),
                                                 Path({str(home / image.initrd.name)!r}), {image.cmdline!r},
                                                 domain_type=dtype.type)) as dom:
                    dom.start()
                    dom.wait_for_report(timeout=120)
                    print("type:", dtype.type, "| report seen")
                print("left:", conn.domains(), virt.qemu_pids(dom.name))
        """)
        runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin")
        # runuser sets HOME to nobody's (nonexistent) home: `env -i` gives a student's clean login instead
        login = ["env", "-i", f"HOME={home}", "PATH=/usr/local/bin:/usr/bin:/bin"]
        proc = subprocess.run([runuser, "-u", "nobody", "--", *login, sys.executable, "-c", script], cwd=TOP,
                              capture_output=True, text=True, timeout=240)
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr
        assert "system refused:" in out and virt.SESSION_URI in out.split("system refused:")[1], out
        assert f"uri: {virt.SESSION_URI} | you are not root" in out, out
        assert "type: qemu | report seen" in out, out  # /dev/kvm is root's here: the session offers TCG only
        assert "left: () ()" in out, out
    finally:
        _stop_session_daemons(home)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(Path(tempfile.gettempdir()) / runtime.prefix("nobody").rstrip("-"), ignore_errors=True)


def _stop_session_daemons(home: Path) -> None:
    """The per-user libvirtd/virtlogd that the test's session started (by their HOME), not any other."""
    for proc in psutil.process_iter(["name", "environ"]):
        if proc.info["name"] in ("libvirtd", "virtlogd") and (proc.info["environ"] or {}).get("HOME") == str(home):
            proc.terminate()
            proc.wait(10)


def test_exercise_solved_with_a_real_guest(conn: virt.Connection, image, domain_type: str) -> None:
    size = exercises.target("libvirt-guest")
    dom = conn.define(guest(image, domain_type, "exercise", vcpus=size.vcpus, memory_mib=size.memory_mib))
    dom.start()
    dom.wait_for_report(timeout=120)
    feedback = exercises.libvirt_guest(dom)
    assert feedback.solved, feedback.message
    assert_gone(conn, dom.name)


def _exercise_cell(notebook: str, name: str) -> str:
    cells = json.loads((TOP / "notebooks" / notebook).read_text())["cells"]
    return next("".join(c["source"]) for c in cells if f"exercise:{name}" in c["metadata"].get("tags", []))


def test_xml_exercise_template_fails_and_the_solution_boots(conn: virt.Connection, image, domain_type: str) -> None:
    """The hand-written domain XML of notebook 05: the untouched template fails; the solution, defined and booted
    on this host's libvirt, reports the learner's machine and ends when the guest powers off (one real boot)."""
    names: dict = {"exercise": exercises, "dtype": types.SimpleNamespace(type=domain_type), "image": image,
                   "spec": virt.DomainSpec.for_image("x", image)}
    exec(_exercise_cell("05_libvirt.ipynb", "libvirt-xml"), names)  # the committed template
    untouched = exercises.libvirt_xml(conn, names["my_xml"])
    assert not untouched.solved and untouched.hints
    exec((TOP / "solutions" / "libvirt-xml.py").read_text(), names)  # our own reference file
    solved = exercises.libvirt_xml(conn, names["my_xml"])
    assert solved.solved, solved.message
    other = exercises.libvirt_xml(conn, names["my_xml"].replace("<vcpu>", "<vcpu>1"))  # 12 or 13 vCPUs: not asked
    assert not other.solved and "asks for" in other.message
    assert not [n for n in conn.domains() if "-xml-" in n]  # the checker left no domain behind


def test_the_stack_from_hardware_to_libvirt(conn: virt.Connection, domain_type: str) -> None:
    argv = ["/usr/bin/qemu-system-x86_64", "-accel", "tcg" if domain_type == "qemu" else "kvm"]
    layers = virt.kvm_stack(host.inspect(), conn, domain_type, argv)
    assert [l.name for l in layers] == ["hardware", "Linux kernel (host OS)", "KVM module", "QEMU", "libvirt"]
    assert conn.versions()[0] in layers[-1].here and conn.choice.uri in layers[-1].here
    assert f"-accel {argv[2]}" in layers[3].here and conn.versions()[1] in layers[3].here
