"""Fault injection on the command line, in process: bad options and environments refused before anything runs.

These go through :func:`labkit.cli.main` exactly as ``python -m labkit``
does, but in the test's own process: a subprocess costs seconds of start-up
on a loaded host, and every case here ends before labkit starts a guest,
a daemon or a download (that is what they check).  Each must end in one
``labkit: error:`` with a ``fix:`` and exit status 2 — never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit import cli, i18n


def main_error(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """``labkit ARGV`` exits 2 with one clear error holding ``words``; returns stderr."""
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors exit; labkit's own return
        status = exc.code
    finally:
        i18n.use(i18n.ENGLISH)  # main() chose a language for this process: back to the suite's
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err, err
    assert err.startswith("labkit: error:") and "\n  fix: " in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize("command", [["boot"], ["nested", "run"], ["nested", "shell"], ["virt", "boot"]])
@pytest.mark.parametrize("timeout", ["-3", "0", "nan", "inf", "-inf", "soon"])
def test_every_timeout_is_checked_by_one_validator_before_anything_starts(
        command: list[str], timeout: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``nested run`` used to boot L1 first and then fail, or take nan/inf; now argparse refuses, as for boot."""
    argv = [*command, f"--timeout={timeout}", *(["--", "true"] if command[-1] == "run" else [])]
    main_error(argv, capsys, "--timeout", "not a number" if timeout == "soon" else "finite and above 0")


@pytest.mark.parametrize("args, words", [
    (["--memory", "-1"], ["memory_mib=-1"]),
    (["--vcpus", "0"], ["vcpus=0"]),
    (["--name", "Bad Name"], ["domain name 'Bad Name'"]),
])
def test_virt_boot_refuses_a_bad_guest_before_asking_libvirtd(
        args: list[str], words: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A connection that cannot work shows whether libvirtd was asked: the guest is refused first."""
    monkeypatch.setenv("LABKIT_VIRT_URI", "qemu:///session?socket=/nonexistent/libvirt-sock")
    err = main_error(["virt", "boot", *args], capsys, *words)
    assert "nonexistent" not in err


@pytest.mark.parametrize("value", ["../../etc/passwd", "/etc/passwd", "..", "xx", "ko/../../x", "$(id)"])
def test_a_labkit_lang_labkit_has_no_messages_in_is_an_error(
        value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABKIT_LANG", value)
    main_error(["cleanup", "--dry-run"], capsys, f"LABKIT_LANG={value!r}", "use one of: en")


def test_error_labels_speak_the_learners_language(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``labkit: error:``/``fix:`` are translated under LABKIT_LANG=ko: argparse's errors and labkit's own."""
    monkeypatch.setenv("LABKIT_LANG", "ko")
    for argv in (["boot", "--timeout", "0"], ["image", "build", "--into", "/etc"]):
        try:
            status = cli.main(argv)
        except SystemExit as exc:
            status = exc.code
        finally:
            i18n.use(i18n.ENGLISH)
        err = capsys.readouterr().err
        assert status == 2 and "Traceback" not in err, err
        assert err.startswith("labkit: 오류: ") and "\n  해결: " in err, err


def test_a_user_without_a_cache_is_never_sent_to_the_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A second Unix user's first boot (no own cache, no shared one) stops with the command that builds one;
    apt-get (which would download the kernel package) is never run."""
    fake = tmp_path / "bin"
    fake.mkdir()
    ran = tmp_path / "apt-get-ran"
    (fake / "apt-get").write_text(f"#!/bin/sh\ntouch {ran}\nexit 100\n")
    (fake / "apt-get").chmod(0o755)
    for name, value in {"XDG_CACHE_HOME": str(tmp_path / "cache"), "LABKIT_SHARED_CACHE": "", "LABKIT_KERNEL": "",
                        "PATH": f"{fake}:{os.environ['PATH']}"}.items():
        monkeypatch.setenv(name, value)
    for argv in (["boot"], ["boot", "--command", "true"], ["virt", "boot"]):
        main_error(argv, capsys, "no kernel for the tiny guest", str(tmp_path / "cache"), "labkit image build",
                   "--into /var/cache/labkit")
    assert not ran.exists(), "labkit ran apt-get while booting"
