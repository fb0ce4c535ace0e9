"""labkit.virt logic without a daemon: XML builder, validation, errors, lifecycle on test:///default.

``test:///default`` is libvirt's in-process mock driver: it defines, starts,
suspends and destroys domains and sends lifecycle events, but boots nothing.
Real guests on a real daemon are in ``test_virt_live.py``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from conftest import FIXTURES, HOSTS
from framework import defined, mock_connection, spec, stand_in_files  # noqa: F401 - fixtures
from labkit import host, libvirtd, runtime, virt
from labkit.errors import AccessDeniedError, InvalidOptionError
from labkit.exercises import virt as exercises
from labkit.widgets import virt as virt_widgets

VIRT = FIXTURES / "virt"


# --------------------------------------------------------------------------- choosing


@pytest.mark.parametrize("euid, env, uri", [
    (0, {}, virt.SYSTEM_URI),
    (1000, {}, virt.SESSION_URI),
    (1000, {virt.URI_ENV: "qemu+ssh://lab@server/system"}, "qemu+ssh://lab@server/system"),
    (0, {virt.URI_ENV: ""}, virt.SYSTEM_URI),
])
def test_choose_uri(euid: int, env: dict, uri: str) -> None:
    choice = virt.choose_uri(euid, env)
    assert choice.uri == uri
    assert ("not root" in choice.reason) is (uri == virt.SESSION_URI)


@pytest.mark.parametrize("recorded, offered, expected", [
    ("intel-vtx-baremetal", ("qemu", "kvm"), "kvm"),
    ("amd-svm-baremetal", ("qemu", "kvm"), "kvm"),
    ("pvm-nested", ("qemu", "kvm"), "qemu"),  # these machines: kvm offered, Linux does not boot under it
    ("intel-vtx-baremetal", ("qemu",), "qemu"),  # e.g. a session daemon that cannot open /dev/kvm
    ("no-dev-kvm", ("qemu",), "qemu"),
])
def test_choose_domain_type_per_host(recorded: str, offered: tuple, expected: str) -> None:
    verdict = host.inspect(HOSTS / recorded, user=host.User(0, frozenset({0}))).verdict
    choice = virt.choose_domain_type(offered, verdict)
    assert choice.type == expected and choice.offered == offered
    assert ("TCG" in choice.reason) is (expected == "qemu")  # the reason names what runs the guest


def test_choose_domain_type_without_qemu_is_an_error() -> None:
    verdict = host.inspect(HOSTS / "pvm-nested", user=host.User(0, frozenset({0}))).verdict
    with pytest.raises(virt.VirtError, match="neither kvm nor qemu"):
        virt.choose_domain_type(("xen",), verdict)


def test_parse_recorded_capabilities() -> None:
    system = virt.parse_capabilities((VIRT / "capabilities-pvm-nested-system.xml").read_text())
    session = virt.parse_capabilities((VIRT / "capabilities-pvm-nested-session.xml").read_text())
    assert system.arch == "x86_64" and system.cpus == 2 and system.memory_kib > 0
    assert system.domain_types() == ("qemu", "kvm")  # root's daemon may open /dev/kvm
    assert session.domain_types() == ("qemu",)  # an unprivileged user's may not (0600 root here)
    x86 = next(g for g in system.guests if g.arch == "x86_64")
    assert x86.emulator == "/usr/bin/qemu-system-x86_64" and "pc" in x86.machines and "microvm" in x86.machines


def test_capabilities_from_the_mock_driver(conn: virt.Connection) -> None:
    caps = conn.capabilities()
    assert caps.cpus > 0 and caps.domain_types("i686") == ("test",)
    with pytest.raises(virt.VirtError, match="neither kvm nor qemu"):
        conn.domain_type()  # the mock driver runs no x86_64 guests at all


# --------------------------------------------------------------------------- spec → XML


def test_domain_xml_has_what_the_lab_guest_needs(files) -> None:
    s = spec(files, memory_mib=192, vcpus=2, cmdline="console=ttyS0 quiet", console_log=Path("/tmp/c.log"))
    root = ET.fromstring(virt.domain_xml(s))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == f"{runtime.prefix()}unit-{os.getpid()}" == s.domain_name
    assert root.findtext("uuid") == s.uuid
    assert (root.find("memory").get("unit"), root.findtext("memory")) == ("MiB", "192")
    assert root.findtext("vcpu") == "2"
    assert root.find("os/type").get("machine") == "pc" and root.findtext("os/type") == "hvm"
    assert (root.findtext("os/kernel"), root.findtext("os/initrd")) == (str(files[0]), str(files[1]))
    assert root.findtext("os/cmdline") == "console=ttyS0 quiet"
    assert root.find("features/acpi") is not None  # else the guest's poweroff leaves the domain running
    assert root.findtext("on_poweroff") == root.findtext("on_reboot") == "destroy"
    serial = root.find("devices/serial")
    assert serial.get("type") == "file" and serial.find("source").get("path") == "/tmp/c.log"
    assert serial.find("source").get("append") == "on"  # a second start must not wipe the first boot's console
    # libvirt would add a USB controller and a balloon, PCI devices the guest probes under TCG (issue 17)
    assert root.find("devices/controller[@type='usb']").get("model") == "none"
    assert root.find("devices/memballoon").get("model") == "none"


def test_domain_xml_escapes_what_it_must(files) -> None:
    s = spec(files, cmdline='console=ttyS0 msg="<a & b>"')
    text = virt.domain_xml(s)
    assert "&lt;a &amp; b&gt;" in text
    assert ET.fromstring(text).findtext("os/cmdline") == s.cmdline


def test_each_spec_gets_its_own_uuid(files) -> None:
    assert spec(files).uuid != spec(files).uuid


@pytest.mark.parametrize("change, error, words", [
    ({"name": "Bad Name"}, InvalidOptionError, "domain name"),
    ({"name": "x" * 41}, InvalidOptionError, "domain name"),
    ({"name": ""}, InvalidOptionError, "domain name"),
    ({"memory_mib": 0}, InvalidOptionError, "memory"),
    ({"memory_mib": 1 << 20}, InvalidOptionError, "memory"),
    ({"vcpus": 0}, InvalidOptionError, "vcpus"),
    ({"domain_type": "xen"}, InvalidOptionError, "domain type"),
    ({"kernel": Path("/nonexistent/vmlinuz")}, virt.MissingKernelError, "kernel /nonexistent/vmlinuz"),
    ({"initrd": Path("/nonexistent/initrd")}, virt.MissingKernelError, "initramfs"),
])
def test_bad_specs_say_what_and_how(files, change: dict, error: type, words: str) -> None:
    s = spec(files).__class__(**{**spec(files).__dict__, **change})
    with pytest.raises(error, match=words) as exc:
        virt.domain_xml(s)
    assert exc.value.fix


def test_kernel_gone_since_define_is_refused_before_start(conn: virt.Connection, files) -> None:
    with conn.define(spec(files)) as dom:
        Path(ET.fromstring(dom.xml).findtext("os/initrd")).unlink()  # the domain's own copy (with its nonce)
        with pytest.raises(virt.MissingKernelError, match="initramfs"):
            dom.start()
        assert dom.state == "shut off"


def test_missing_kernel_is_refused_before_define(conn: virt.Connection, files) -> None:
    files[0].unlink()
    with pytest.raises(virt.MissingKernelError, match="does not exist") as exc:
        conn.define(spec(files))
    assert "tiny_guest" in exc.value.fix
    assert not defined(conn, spec(files).domain_name)


# --------------------------------------------------------------------------- errors from libvirt


def test_generated_xml_passes_libvirts_schema(conn: virt.Connection, files) -> None:
    with conn.define(spec(files)) as dom:  # defined with VIR_DOMAIN_DEFINE_VALIDATE
        assert defined(conn, dom.name)
        assert ET.fromstring(dom.live_xml()).findtext("uuid") == dom.uuid


def test_malformed_xml(conn: virt.Connection) -> None:
    with pytest.raises(virt.DomainXmlError, match="not well-formed") as exc:
        conn.define(f"<domain type='test'><name>{runtime.prefix()}x</name>")
    assert exc.value.fix


def test_xml_that_fails_the_schema(conn: virt.Connection, files) -> None:
    bad = virt.domain_xml(spec(files)).replace("<vcpu>", "<vcpus>").replace("</vcpu>", "</vcpus>")
    with pytest.raises(virt.DomainXmlError, match="vcpus") as exc:
        conn.define(bad)
    assert "virt-xml-validate" in exc.value.fix
    assert not defined(conn, spec(files).domain_name)


def test_xml_without_the_lab_prefix_is_refused(conn: virt.Connection, files) -> None:
    foreign = virt.domain_xml(spec(files)).replace(spec(files).domain_name, "someone-elses-vm")
    with pytest.raises(InvalidOptionError, match="lab prefix"):
        conn.define(foreign)
    assert not defined(conn, "someone-elses-vm")


def test_duplicate_name_leaves_the_first_domain_alone(conn: virt.Connection, files) -> None:
    with conn.define(spec(files)) as first:
        first.start()
        with pytest.raises(virt.DuplicateDomainError, match="already exists") as exc:
            conn.define(spec(files))
        assert "cleanup" in exc.value.fix
        assert first.state == "running" and defined(conn, first.name)
        # the same XML (same UUID) again would silently *redefine* it in libvirt: refused too
        with pytest.raises(virt.DuplicateDomainError):
            conn.define(first.xml)
        assert first.state == "running"


def test_unreachable_daemon_says_how_to_start_one() -> None:
    with pytest.raises(virt.DaemonUnreachableError, match="no libvirt daemon answers") as exc:
        virt.connect("qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    assert "libvirtd" in exc.value.fix


def test_other_libvirt_refusals_keep_libvirts_words(conn: virt.Connection, files) -> None:
    with conn.define(spec(files)) as dom:
        with pytest.raises(virt.VirtError, match=f"cannot suspend {dom.name} on test:///default: .*not running"):
            dom.suspend()  # it was never started


# --------------------------------------------------------------------------- lifecycle and events


def test_event_and_state_tables_follow_libvirt() -> None:
    assert [getattr(libvirt, f"VIR_DOMAIN_EVENT_{e.upper()}") for e in virt.EVENTS] == list(range(len(virt.EVENTS)))
    assert virt.STATES.index("shut off") == libvirt.VIR_DOMAIN_SHUTOFF
    assert virt.STATES.index("paused") == libvirt.VIR_DOMAIN_PAUSED
    details = virt.domain.EVENT_DETAILS
    assert details[virt.EVENTS.index("stopped")][libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED] == "destroyed"
    assert details[virt.EVENTS.index("started")][libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED] == "booted"


def test_lifecycle_with_events_on_the_mock_driver(conn: virt.Connection, files) -> None:
    dom = conn.define(spec(files))
    scratch = dom.console_log.parent
    assert scratch.is_dir() and scratch.parent == runtime.run_dir()
    with dom:
        assert dom.state == "shut off" and "defined" in dom.timeline
        dom.start()
        assert dom.state == "running" and dom.stats().state == "running"
        dom.suspend()
        assert dom.state == "paused"
        dom.resume()
        dom.destroy()
        assert dom.state == "shut off"
        dom.wait_for_event("stopped")
        assert dom.name in conn.domains() and dom.name in conn.all_stats()  # still defined: persistent
    assert not defined(conn, dom.name) and not scratch.exists()
    seen = [(e.event, e.detail) for e in dom.events]
    assert seen[0] == ("defined", "added") and seen[-1] == ("undefined", "removed")
    for step in [("started", "booted"), ("suspended", "paused"), ("resumed", "unpaused"), ("stopped", "destroyed")]:
        assert step in seen
    assert [e.at for e in dom.events] == sorted(e.at for e in dom.events)


def test_two_live_domains_on_one_connection_each_get_their_own_events(conn: virt.Connection, files) -> None:
    """libvirt refuses a second any-domain lifecycle callback on a connection ("event callback already
    tracked"): the connection registers once and hands each domain its own events."""
    with conn.define(spec(files, "one")) as one, conn.define(spec(files, "two")) as two:
        one.start()
        two.start()
        two.suspend()
        one.wait_for_event("started")
        two.wait_for_event("suspended")
        assert ("suspended", "paused") not in [(e.event, e.detail) for e in one.events]
    two_seen = [(e.event, e.detail) for e in two.events]
    assert ("started", "booted") in two_seen and ("suspended", "paused") in two_seen
    assert not defined(conn, one.name) and not defined(conn, two.name)


@pytest.mark.parametrize("raised", [RuntimeError, KeyboardInterrupt])
def test_with_block_always_destroys_and_undefines(conn: virt.Connection, files, raised: type) -> None:
    with pytest.raises(raised):
        with conn.define(spec(files)) as dom:
            dom.start()
            raise raised("mid-boot")
    assert not defined(conn, dom.name)
    with pytest.raises(virt.VirtError, match="not defined"):
        dom.start()


def test_close_is_idempotent_and_drops_the_exit_hook(conn: virt.Connection, files) -> None:
    dom = conn.define(spec(files))
    hook = dom.exit_hook
    assert hook is not None and runtime.release_pending(hook)
    dom.close()
    dom.close()
    assert not runtime.release_pending(hook)


def test_a_domain_handle_makes_nothing(conn: virt.Connection) -> None:
    """Constructing a Domain calls no libvirt and makes no file: Domain.define (conn.define) does that."""
    before = {d.name() for d in conn.raw.listAllDomains()}
    dom = virt.Domain(conn)
    assert dom.exit_hook is None and dom.name == "" and {d.name() for d in conn.raw.listAllDomains()} == before
    dom.close()  # nothing to release, and no error


def test_cleanup_touches_only_this_users_lab_domains(conn: virt.Connection, files) -> None:
    ours, theirs = runtime.prefix() + "left-behind", "labkit-otheruser-guest"
    for name in (ours, theirs):  # defined behind labkit's back, as a crashed session would leave them
        root = ET.fromstring(virt.domain_xml(spec(files)))
        root.find("name").text = name
        root.remove(root.find("uuid"))
        conn.raw.defineXML(ET.tostring(root, encoding="unicode"))
    conn.raw.lookupByName(ours).create()
    assert conn.cleanup() == (ours,)
    assert not defined(conn, ours) and defined(conn, theirs) and defined(conn, "test")


def test_stats_from_a_record() -> None:
    s = virt.DomainStats.from_record({"state.state": 1, "cpu.time": 2_500_000_000, "vcpu.current": 2,
                                      "vcpu.0.time": 1_000_000_000, "vcpu.1.time": 500_000_000,
                                      "balloon.current": 262144, "balloon.maximum": 262144, "balloon.rss": 51200})
    assert (s.state, s.cpu_time_ns, s.vcpu_time_ns, s.vcpus, s.memory_kib >> 10, s.rss_kib) == (
        "running", 2_500_000_000, 1_500_000_000, 2, 256, 51200)
    assert virt.DomainStats.from_record({"state.state": 5}).cpu_time_ns == 0


# --------------------------------------------------------------------------- QEMU command line


def test_parse_qemu_log_takes_the_last_start() -> None:
    argv = virt.parse_qemu_log((VIRT / "qemu-log-two-starts.log").read_text())
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert argv[argv.index("-m") + 1] == "192"  # the second start; the first had 256
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert not any(a.startswith(("PATH=", "HOME=", "LC_ALL=")) for a in argv)
    assert argv[argv.index("-append") + 1] == "console=ttyS0 quiet panic=-1"  # quoting undone
    assert virt.parse_qemu_log("no start here\n") == ()


def test_compare_command_lines() -> None:
    rows = virt.compare_command_lines(
        ["qemu-system-x86_64", "-name", "guest=x", "-m", "256", "-no-shutdown", "-accel", "tcg"],
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-no-reboot", "-serial", "stdio"])
    table = {r.option: (r.libvirt, r.labkit) for r in rows}
    assert table["-m"] == (("256",), ("256",))
    assert table["-name"] == (("guest=x",), ())
    assert table["-no-shutdown"] == (("",), ())
    assert table["-serial"] == ((), ("stdio",))
    assert [r.option for r in rows][:2] == ["(program)", "-name"]


def test_command_line_of_a_defined_domain(conn: virt.Connection, files) -> None:
    """Before a start there is no QEMU log: labkit asks libvirt to convert (domxml-to-native)."""
    with conn.define(spec(files)) as dom:
        with pytest.raises(virt.VirtError, match="convert to a QEMU command line"):
            dom.qemu_command_line()  # the mock driver has no QEMU to convert to: a clear error, not a crash


# --------------------------------------------------------------------------- the system daemon's config


def test_qemu_conf_settings() -> None:
    assert libvirtd.missing_settings(libvirtd.qemu_conf_text()) == {}
    assert libvirtd.qemu_conf_text().startswith(libvirtd.MARKER)
    distro_default = '#user = "libvirt-qemu"\n# security_driver = "selinux"\nuser = "root" # comment\n'
    assert libvirtd.missing_settings(distro_default) == {k: v for k, v in libvirtd.QEMU_SETTINGS.items()
                                                         if k != "user"}


@pytest.mark.skipif(not Path(libvirtd.LIBVIRTD).exists(), reason="libvirtd is not installed")
def test_configure_never_rewrites_a_foreign_qemu_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if libvirtd.os.geteuid() != 0:
        pytest.skip("configure() is root-only (CI runs as root)")
    conf = tmp_path / "qemu.conf"
    conf.write_text('# the distribution\'s file\nuser = "libvirt-qemu"\n')
    with pytest.raises(libvirtd.DaemonError, match='security_driver = "none"') as exc:
        libvirtd.configure(conf)
    assert "add these lines" in exc.value.fix and conf.read_text().startswith("# the distribution")
    conf.unlink()
    assert f"wrote {conf}" in libvirtd.configure(conf)
    assert libvirtd.missing_settings(conf.read_text()) == {}


def test_the_subreaper_adopts_and_reaps_what_the_daemon_leaves(tmp_path: Path) -> None:
    """libvirtd runs under labkit.subreaper: a QEMU it double-forked is re-parented to the subreaper and reaped
    at once, not left a zombie until PID 1 gets to it (every ~2 s here; libvirt waits for it, issue 17)."""
    seen = tmp_path / "ppid"
    orphan = (f"import os, sys, time\n"
              f"while os.getppid() == int(sys.argv[1]): time.sleep(0.01)\n"  # until its parent has exited
              f"open({str(seen)!r}, 'w').write(str(os.getppid()))")
    # like libvirtd --daemon: fork a child with its own stdio, return
    daemon = f"{sys.executable} -c {shlex.quote(orphan)} $$ </dev/null >/dev/null 2>&1 & exit 3"
    proc = subprocess.Popen([sys.executable, "-m", "labkit.subreaper", "sh", "-c", daemon],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.read() == "exit 3\n"  # the command's status, then EOF while the orphan still runs
    assert proc.wait(timeout=30) == 3  # it ended only after reaping the orphan: no child left
    assert seen.read_text() == str(proc.pid)  # the orphan was adopted by the subreaper, not by PID 1


def test_daemon_management_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libvirtd.os, "geteuid", lambda: 1000)
    with pytest.raises(AccessDeniedError, match="only root") as exc:
        libvirtd.configure()
    assert virt.SESSION_URI in exc.value.fix


def test_stop_leaves_a_daemon_labkit_did_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = libvirtd.Daemon(virt.SYSTEM_URI, True, 4242, False, None, "answers")
    monkeypatch.setattr(libvirtd, "status", lambda uri=virt.SYSTEM_URI: foreign)
    with pytest.raises(libvirtd.DaemonError, match="not started by labkit") as exc:
        libvirtd.stop()
    assert "systemctl" in exc.value.fix


# --------------------------------------------------------------------------- the dashboard


def test_dashboard_follows_the_domain(conn: virt.Connection, files) -> None:
    with conn.define(spec(files)) as dom:
        board = virt_widgets.Dashboard(dom, interval=0.05)
        assert "data-state='shut off'" in board.view.value
        dom.start()
        dom.wait_for_event("started")
        board.refresh()
        assert "data-state='running'" in board.view.value and "started (booted)" in board.view.value
        board.act(dom.suspend)
        assert "data-state='paused'" in (board.refresh() and board.view.value)
        board.act(dom.suspend)  # suspending a paused domain: shown, not raised
        assert "suspend" in board.message.value and dom.state == "paused"
    assert board.wait_stopped(5)  # stops by itself once the domain is gone
    assert "data-state='undefined'" in board.view.value


def test_render_without_stats() -> None:
    assert "gone" in virt_widgets.render("labkit-x-y", None, [])


# --------------------------------------------------------------------------- URIs and the exercise


@pytest.mark.parametrize("uri, parts", [
    ("qemu:///system", ("qemu", "", "", "", "/system")),
    ("qemu:///session", ("qemu", "", "", "", "/session")),
    ("qemu+ssh://alice@lab.example.org/system", ("qemu", "ssh", "alice", "lab.example.org", "/system")),
    ("test:///default", ("test", "", "", "", "/default")),
    ("qemu+unix:///system?socket=/tmp/s", ("qemu", "unix", "", "", "/system")),
])
def test_uri_parts(uri: str, parts: tuple) -> None:
    p = virt.uri_parts(uri)
    assert (p.driver, p.transport, p.user, p.host, p.path) == parts
    assert p.remote is bool(parts[3])


def test_uri_parts_rejects_what_is_no_uri() -> None:
    with pytest.raises(InvalidOptionError, match="not a libvirt URI"):
        virt.uri_parts("localhost")


def test_exercise_feedback_without_a_booted_guest(conn: virt.Connection, files) -> None:
    assert not exercises.libvirt_guest(None).solved
    assert "conn.define" in exercises.libvirt_guest("labkit-me-guest").hint
    size = exercises.target("libvirt-guest")
    wrong = conn.define(spec(files, vcpus=1, memory_mib=size.memory_mib))
    feedback = exercises.libvirt_guest(wrong)
    assert not feedback.solved and f"1 vCPUs and {size.memory_mib} MiB, not {size}" in feedback.message
    assert not defined(conn, wrong.name)  # the check tears the domain down
    unbooted = conn.define(spec(files, vcpus=size.vcpus, memory_mib=size.memory_mib))
    assert "has not printed its report" in exercises.libvirt_guest(unbooted).message
    assert not defined(conn, unbooted.name)


def test_waiting_for_a_line_does_not_ask_libvirt_while_the_guest_runs(conn: virt.Connection, files,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """While a guest powers off the daemon holds its lock, and a state call waits for the whole teardown
    (1.3 s here): the wait must find a printed line without asking (issue 17's bimodal boot time)."""
    with conn.define(spec(files)) as dom:
        dom.start()
        dom.wait_for_event("started")
        assert dom.console_log is not None
        dom.console_log.write_text("booting\nLABKIT-REPORT 1\n")

        def busy_daemon(_dom: virt.Domain) -> str:
            raise AssertionError("asked libvirt for the state of a guest whose lifecycle events say it runs")
        monkeypatch.setattr(virt.Domain, "state", property(busy_daemon))
        assert dom.wait_for_line("LABKIT-REPORT", timeout=5) == "LABKIT-REPORT 1"
        assert "report" in dom.timeline


def test_a_stop_event_libvirt_does_not_confirm_does_not_end_the_wait(conn: virt.Connection, files) -> None:
    """A 'stopped' event may arrive late, from before a restart: libvirt's own state decides."""
    with conn.define(spec(files)) as dom:
        dom.start()
        dom.wait_for_event("started")
        dom.events.append(virt.LifecycleEvent(dom.events[-1].at, "stopped", "destroyed"))  # a stale one
        with pytest.raises(virt.GuestTimeoutError, match="0.2 s passed"):  # not "the domain stopped"
            dom.wait_for_line("LABKIT-REPORT", timeout=0.2)


def test_waiting_for_a_line_fails_fast_and_says_why(conn: virt.Connection, files) -> None:
    with conn.define(spec(files)) as dom:
        dom.start()  # the mock driver "runs" it, but nothing ever writes the console
        with pytest.raises(virt.GuestTimeoutError, match="0.2 s passed") as exc:
            dom.wait_for_line("LABKIT-REPORT", timeout=0.2)
        assert "the console is empty" in exc.value.what and "--timeout" in exc.value.fix
        assert "go with the domain" in exc.value.fix  # never a path to a file close() deletes
        dom.destroy()
        with pytest.raises(virt.GuestStoppedError, match="the domain stopped"):  # not "60 s passed"
            dom.wait_for_line("LABKIT-REPORT", timeout=60)


def test_render_shows_counters_only_while_the_guest_runs() -> None:
    record = {"state.state": 1, "cpu.time": 3_000_000_000, "vcpu.current": 1, "vcpu.0.time": 2_000_000_000,
              "balloon.current": 262144, "balloon.maximum": 262144, "balloon.rss": 51200}
    running = virt_widgets.render("labkit-x-y", virt.DomainStats.from_record(record), [])
    assert "2.00 s in vCPUs, 3.00 s for all of QEMU" in running and "256 MiB of 256 MiB" in running
    stopped = virt_widgets.render("labkit-x-y", virt.DomainStats.from_record({**record, "state.state": 5}), [])
    assert "data-state='shut off'" in stopped and "CPU time" not in stopped


def test_qemu_name_reads_the_label_of_qemu_command_lines_only() -> None:
    assert virt.qemu_name(["/usr/bin/qemu-system-x86_64", "-name", "guest=labkit-u-a-1,debug-threads=on"]) \
        == "guest=labkit-u-a-1"
    assert virt.qemu_name(["qemu-system-x86_64", "-m", "64", "-name", "labkit-u-b-2-3,process=x"]) == "labkit-u-b-2-3"
    assert virt.qemu_name(["/bin/sleep", "-name", "guest=labkit-u-a-1"]) is None
    assert virt.qemu_name(["qemu-system-x86_64", "-name"]) is None and virt.qemu_name([]) is None


def test_the_xml_exercise_gives_the_learners_domain_a_lab_name_and_its_own_console() -> None:
    """labkit manages only domains it names; the checker reads the report from a console file of its own."""
    import xml.etree.ElementTree as ET

    from labkit import runtime
    from labkit.exercises import virt as exercise

    mine = ('<domain type="qemu"><name>by-hand</name><uuid>1b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid>'
            '<memory unit="MiB">192</memory><vcpu>2</vcpu>'
            '<devices><serial type="pty"/><console type="pty"/></devices></domain>')
    root = ET.fromstring(exercise.checked_xml(mine, "/tmp/x/console.log"))
    assert root.findtext("name", "").startswith(runtime.prefix()) and root.find("uuid") is None
    serials = [(s.get("type"), s.find("source").get("path")) for s in root.iter("serial")]
    assert serials == [("file", "/tmp/x/console.log")]
    assert root.find("devices/console") is None
    assert exercise.defined_size(mine) == exercise.Size(2, 192)
