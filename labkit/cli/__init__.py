"""``labkit``: the lab from the command line.

Each subcommand lives in its own module here with a ``register(parser)``
function that adds its options; :data:`COMMANDS` lists them in help order with
their one-line help.  Only the module of the command being run is imported:
``labkit --help`` and each command start without the others' dependencies
(libvirt, QEMU's QMP, papermill…).  Any
:class:`~labkit.errors.LabkitError` becomes one ``labkit: error:`` line with
its fix and exit status 2, and so does any ``OSError`` that reached the top
(a full disk, a read-only directory: :func:`labkit.errors.from_os_error`);
an interrupt exits 130 after cleanup has run; output piped into a reader that
stopped early (``| head``) ends quietly.  A learner never sees a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from labkit import i18n
from labkit.errors import LabkitError, MissingToolError, from_os_error
from labkit.i18n import _
from labkit.i18n import noop as N_

#: Every command: its name -> (its module in labkit.cli, its one-line help), in help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", N_("is this host ready for the lab? (ok/warn/fail with fixes)")),
    "host": ("host", N_("kernel, CPU, bare metal or VM, and the /dev/kvm verdict")),
    "kvm": ("kvm", N_("run the lab's tiny guests on /dev/kvm with labkit's own VMM")),
    "image": ("image", N_("build or show the tiny guest (kernel + busybox initramfs)")),
    "boot": ("boot", N_("boot the tiny Linux guest with QEMU; print its report and boot timings")),
    "virt": ("virt", N_("libvirt: the daemon, and real guests managed by it")),
    "nested": ("nested", N_("run a command inside an emulated AMD-V machine (hardware KVM on any x86 host)")),
    "cleanup": ("cleanup", N_("stop and remove the QEMU processes, libvirt domains, scratch dirs and logs that "
                              "killed lab runs left behind (labkit-<you>-*)")),
    "run": ("run", N_("execute notebooks headless with papermill: results as a table, sweeps as plots")),
    "results": ("results", N_("combine result files of many machines (labkit run --export) into one table and "
                              "plot")),
    "hub": ("hub", N_("run a JupyterHub for a class: one JupyterLab per student account (root)")),
    "class": ("class_status", N_("the instructor's view of a class: exercise checks, run results")),
}

#: argparse's own words (its usage line, section titles, -h and its errors), translated like labkit's.
ARGPARSE_MESSAGES = (N_("usage: "), N_("positional arguments"), N_("options"), N_("show this help message and exit"),
                     N_("unrecognized arguments: %s"), N_("the following arguments are required: %s"),
                     N_("invalid choice: %(value)r (choose from %(choices)s)"),
                     N_("argument %(argument_name)s: %(message)s"), N_("expected one argument"),
                     N_("invalid %(type)s value: %(value)r"), N_("not allowed with argument %s"))


def seconds(text: str) -> float:
    """argparse type of ``--timeout``: a number of seconds above 0 (0 or -1 would give up before starting)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} s: the timeout must be finite and above 0 (e.g. 60)")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors in the lab's one format (``labkit: error:`` + ``fix:``, exit 2)."""

    def error(self, message: str) -> NoReturn:
        error, fix = _labels()
        print(f"{error} {self.prog}: {message}", file=sys.stderr)
        print(f"  {fix} " + _("`{prog} --help` lists the options and their values").format(prog=self.prog),
              file=sys.stderr)
        sys.exit(2)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser for ``argv``: every command listed, with the options of the one ``argv`` runs.

    Only that command's module is imported (none for ``labkit --help``): a command starts without the
    others' dependencies.
    """
    chosen = _command_in(argv)
    parser = _Parser(prog="labkit", description=_("KVM Lab: inspect this host and run real guests."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=_(help_text))  # listed in `labkit --help`; never parsed in this run
            continue
        try:
            module = importlib.import_module(f"labkit.cli.{module_name}")
        except ImportError as exc:  # e.g. libvirt-python missing: the other commands still work
            _register_unavailable(sub.add_parser(name, help=_("(unavailable: {module} is not installed)").format(
                module=exc.name)), name, exc)
            continue
        module.register(sub.add_parser(name, help=_(help_text)))
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The command ``argv`` runs (its first word that is not an option), or None when it names none."""
    return next((word for word in argv if not word.startswith("-")), None)


def _register_unavailable(p: argparse.ArgumentParser, name: str, exc: ImportError) -> None:
    """A stand-in for a command whose Python dependencies are missing: it says which, and the fix."""
    def unavailable(_args: argparse.Namespace) -> int:
        raise MissingToolError(f"`labkit {name}` needs the Python module {exc.name!r}, which is not installed",
                               "./kvmlab setup (or: pip install -e '.[test]' in the lab's venv)")

    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=unavailable)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        i18n.use()  # LABKIT_LANG, else the locale: labkit's messages (and its --help) in the learner's language
    except LabkitError as exc:
        return _error(exc)
    argparse._ = i18n.gettext  # type: ignore[attr-defined]  # argparse's own words (usage:, -h): ARGPARSE_MESSAGES
    args = build_parser(argv).parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's own flush at exit
        return status
    except BrokenPipeError:
        return _reader_gone()
    except LabkitError as exc:
        return _error(exc)
    except OSError as exc:
        return _error(from_os_error(exc, f"complete `labkit {args.command}`"))
    except KeyboardInterrupt:
        print("labkit: interrupted", file=sys.stderr)
        return 130


def _error(exc: LabkitError) -> int:
    """``labkit: error: …`` and ``fix: …`` on stderr; exit status 2."""
    try:
        error, fix = _labels()
        print(f"{error} {exc.what}", file=sys.stderr)
        if exc.fix:
            print(f"  {fix} {exc.fix}", file=sys.stderr)
    except BrokenPipeError:
        return _reader_gone()
    return 2


def _labels() -> tuple[str, str]:
    """``labkit: error:`` and ``fix:`` in the learner's language."""
    return _("labkit: error:"), _("fix:")


def _reader_gone() -> int:
    """The reader of our output left (``labkit … | head``): stop quietly, as a killed-by-SIGPIPE program would.

    Python would otherwise print a traceback when it flushes stdout at exit, so
    stdout is pointed at /dev/null first.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, what the shell reports for `yes | head`
