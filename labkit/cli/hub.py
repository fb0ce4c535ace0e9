"""``labkit hub start``: a real JupyterHub for a class on this host (as root)."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable
from pathlib import Path

from labkit.errors import InvalidOptionError
from labkit.hub import accounts, limits
from labkit.hub.k8s import KVM_PLUGINS
from labkit.hub.plan import CLUSTERS, STATE_DIR, HubPlan
from labkit.i18n import _

LAB_ROOT = Path(__file__).resolve().parent.parent.parent


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit hub`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    p.description = ("Creates the student accounts (PAM logins), then runs JupyterHub with "
                     "configurable-http-proxy until Ctrl-C or SIGTERM; stopping it stops every "
                     "student's server, guests and processes. ./kvmlab hub installs what it needs.")
    hub = p.add_subparsers(dest="hub_command", required=True, metavar="ACTION")
    start = hub.add_parser("start", help=_("create the accounts and run the hub in the foreground"))
    who = start.add_mutually_exclusive_group(required=True)
    who.add_argument("--students", help=_("comma-separated login names (created if missing)"))
    who.add_argument("--count", type=int, help=_("this many students, named student1, student2, ..."))
    start.add_argument("--passwords", type=Path, metavar="FILE",
                       help=_("'name:password' lines; new accounts not in it get a random password, "
                            "written to STATE/passwords (root only)"))
    start.add_argument("--ip", type=ip_address, default="", help=_("address to listen on (default: all)"))
    start.add_argument("--port", type=port_number, default=8000, help=_("TCP port to listen on (default 8000)"))
    start.add_argument("--state", type=Path, default=STATE_DIR,
                       help=_("hub state folder (default {path})").format(path=STATE_DIR))
    start.add_argument("--memory-mib", type=int, default=2048, help=_("memory cap per student (0: none)"))
    start.add_argument("--cpus", type=float, default=1.0, help=_("CPU quota per student (0: none)"))
    start.add_argument("--cache", type=Path, default=Path("/var/cache/labkit"),
                       help=_("shared read-only guest image cache (built if missing)"))
    cluster = start.add_argument_group("past one host: students' servers as cluster jobs (docs/instructor.md)")
    cluster.add_argument("--cluster", choices=CLUSTERS, default="local",
                         help="local: servers on this host (default); slurm: each server a Slurm job (batchspawner)")
    cluster.add_argument("--hub-ip", type=ip_address, default="",
                         help="address the compute nodes reach the hub's API at (required with --cluster slurm)")
    cluster.add_argument("--partition", default="", help="Slurm partition of the students' jobs (default: the "
                                                         "cluster's)")
    cluster.add_argument("--slurm-conf", type=Path, help="slurm.conf of the cluster (default: Slurm's own)")
    cluster.add_argument("--poll-seconds", type=poll_seconds, default=30,
                         help="how often the hub checks that each server still runs (default 30)")
    start.set_defaults(func=run_start)
    k8s = hub.add_parser("k8s-values", help="write Zero to JupyterHub values for the lab (Kubernetes; never run here)")
    k8s.add_argument("--image", default="registry.example.org/kvm-lab",
                     help="the lab's image, built with repo2docker from this repository (docs/instructor.md)")
    k8s.add_argument("--tag", default="latest", help="the image's tag")
    k8s.add_argument("--kvm-plugin", choices=sorted(KVM_PLUGINS), default="kubevirt",
                     help="the device plugin that gives pods /dev/kvm (kubevirt: devices.kubevirt.io/kvm; "
                          "generic: squat.ai/kvm)")
    k8s.add_argument("--out", type=Path, help="write to this file (default: print)")
    k8s.set_defaults(func=run_k8s_values)


def ip_address(text: str) -> str:
    """argparse type of ``--ip``: an IPv4 or IPv6 address, or empty (every address)."""
    if not text:
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address (e.g. 0.0.0.0, 127.0.0.1 or ::)") from None


def whole_number(noun: str, label: str, low: int, high: int, example: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``, with errors that name it (``noun``, ``label``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{label} {value} is out of range: use {low} to {high} (e.g. {example})")
        return value
    return parse


#: ``--port``: a TCP port.
port_number = whole_number("a port number", "port", 1, 65535, 8000)
#: ``--poll-seconds``: 0 would stop the hub from noticing a lost server.
poll_seconds = whole_number("a number of seconds", "--poll-seconds", 1, 3600, 30)


def students_from(args: argparse.Namespace) -> tuple[str, ...]:
    if args.count is not None:
        if not 1 <= args.count <= 500:
            raise InvalidOptionError(f"--count {args.count} is out of range", "use 1 to 500 students")
        return tuple(f"student{i}" for i in range(1, args.count + 1))
    names = tuple(n.strip() for n in args.students.split(",") if n.strip())
    if not names:
        raise InvalidOptionError(f"--students {args.students!r} names no student",
                                 "give comma-separated login names (--students alice,bob) or --count N")
    return tuple(accounts.check_name(n) for n in names)


def run_start(args: argparse.Namespace) -> int:
    from labkit.hub import serve

    plan = HubPlan(LAB_ROOT, students_from(args), args.state, args.ip, args.port,
                   limits.Limits(args.memory_mib or None, args.cpus or None), args.cache, args.cluster,
                   hub_ip_of(args), args.partition, str(args.slurm_conf or ""), args.poll_seconds)
    return serve.start(plan, args.passwords)


def hub_ip_of(args: argparse.Namespace) -> str:
    """The hub API's address: loopback for servers on this host; on a cluster, one the nodes reach (given)."""
    if args.cluster == "local":
        return args.hub_ip or "127.0.0.1"
    if not args.hub_ip or ipaddress.ip_address(args.hub_ip).is_loopback or args.hub_ip in ("0.0.0.0", "::"):
        raise InvalidOptionError(f"--cluster {args.cluster} needs --hub-ip: an address of this host that the "
                                 "compute nodes reach", "give this host's address on the cluster's network, e.g. "
                                                        "--hub-ip 10.0.0.1")
    return args.hub_ip


def run_k8s_values(args: argparse.Namespace) -> int:
    """The chart's values, sized by the doctor's per-seat parts, as YAML."""
    import yaml

    from labkit.doctor import SEAT_PARTS_MIB
    from labkit.hub import k8s

    text = k8s.HEADER + yaml.safe_dump(k8s.values(args.image, args.tag, sum(SEAT_PARTS_MIB.values()),
                                                  args.kvm_plugin), sort_keys=False, allow_unicode=True)
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text)
        print(f"Zero to JupyterHub values: {args.out} (helm upgrade --install ... --values {args.out})")
    return 0
