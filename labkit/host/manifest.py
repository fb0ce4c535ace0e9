"""``host.json``: what a recording holds besides files, and the manifest of what it recorded.

Validated against :data:`HOST_JSON_SCHEMA` with jsonschema, so a bad
recording is one clear :class:`HostDataError` naming the key, never a
traceback: every key is optional, nothing else is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path

from labkit.errors import InvalidOptionError


class HostDataError(InvalidOptionError):
    """A path given as a host, or a recording, cannot be read as one."""


#: What recordings made before the manifest existed (format 1) recorded.
FORMAT1_RECORDED = ("proc/cpuinfo", "proc/version", "proc/cmdline", "proc/modules",
                     "proc/sys/kernel/osrelease", "sys/class/dmi/id/sys_vendor",
                     "sys/class/dmi/id/product_name", "sys/hypervisor/type",
                     "sys/module/kvm", "sys/module/kvm_intel", "sys/module/kvm_amd",
                     "sys/module/kvm_pvm", "dev/kvm")

_DEVICE_SCHEMA = {
    "type": "object",
    "properties": {
        "mode": {"type": "string", "pattern": "^0?[0-7]{3,4}$"},
        "uid": {"type": "integer", "minimum": 0}, "gid": {"type": "integer", "minimum": 0},
        "owner": {"type": "string"}, "group": {"type": "string"},
        "type": {"enum": ["char", "block", "regular file", "directory", "symlink", "other"]},
        "rdev": {"type": "string", "pattern": "^[0-9]+:[0-9]+$"},
        "target": {"type": "string"},
    },
    "additionalProperties": False,
}

#: The schema of ``host.json``: every key optional, nothing else allowed.
HOST_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "format": {"enum": [1, 2]},
        "source": {"type": "string"},
        "machine": {"type": "string"},
        "recorded": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "modules_filter": {"type": "string", "minLength": 1},
        "devices": {"type": "object", "additionalProperties": _DEVICE_SCHEMA},
        "kvm_probe": {
            "type": "object",
            "properties": {"api_version": {"type": "integer"},
                           "capabilities": {"type": "object", "additionalProperties": {"type": "integer"}},
                           "error": {"type": "string"}},
            "additionalProperties": False,
        },
        "cpuid": {"type": "object", "patternProperties": {
            "^0x[0-9a-f]+$": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 4,
                              "maxItems": 4}}, "additionalProperties": False},
        "msr": {"type": "object", "patternProperties": {"^0x[0-9a-f]+$": {"type": "integer", "minimum": 0}},
                "additionalProperties": False},
        "groups": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


def load_manifest(root: Path) -> dict:
    """``root/host.json`` validated against :data:`HOST_JSON_SCHEMA` ({} when there is none)."""
    path = root / "host.json"
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HostDataError(f"{path} is not valid JSON ({exc})",
                            f"fix or delete {path}; `labkit host --record DIR` writes a valid one") from None
    import jsonschema  # here, not at the top: importing it costs ~1 s (its URI format checkers), and only
    # recordings have a host.json: a live `labkit host` never pays for it

    try:
        jsonschema.validate(meta, HOST_JSON_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        raise HostDataError(f"{path}: at {where}: {exc.message}",
                            "see labkit/host/manifest.py HOST_JSON_SCHEMA for the format, or record "
                            "the host again with `labkit host --record DIR`") from None
    return meta
