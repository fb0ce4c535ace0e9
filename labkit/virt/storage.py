"""libvirt's storage: a pool (a directory libvirt manages) and its volumes (disk images in it).

``virsh pool-create-as`` / ``vol-create`` in Python.  The lab's pools are
*transient* directory pools named ``labkit-<user>-<name>-<pid>`` on a
private scratch dir: :meth:`Pool.close` destroys the pool and deletes its
volumes; a pool whose owner died is destroyed by the next :func:`create_pool`
of that user (:func:`reclaim_pools`) or by ``labkit cleanup``.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import libvirt

from labkit import runtime
from labkit.errors import InvalidOptionError, ReadOnlyError
from labkit.virt.connection import Connection


class DuplicatePoolError(InvalidOptionError):
    """A pool of that name already exists on the daemon."""


@dataclass(frozen=True)
class Volume:
    """One volume as libvirt sees it (``virsh vol-info`` / ``vol-dumpxml``)."""

    name: str
    path: Path
    format: str  # "raw", "qcow2"
    capacity: int  # bytes the guest sees
    allocation: int  # bytes it takes on the host
    backing: Path | None  # the backing store of an overlay


def pool_names(conn: Connection, prefix: str | None = None) -> tuple[str, ...]:
    """Names of the pools (active or defined) of the lab's prefix (this user's by default)."""
    prefix = runtime.prefix() if prefix is None else prefix
    names = conn.call("list the storage pools", conn.raw.listAllStoragePools, 0)
    return tuple(sorted(p.name() for p in names if p.name().startswith(prefix)))


def remove_pool(conn: Connection, name: str) -> bool:
    """Delete the volumes of pool ``name``, then destroy (and undefine) it; False if it was already gone."""
    try:
        pool = conn.raw.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return False
    persistent = pool.isPersistent()  # a transient pool is gone once destroyed: ask first
    if pool.isActive():
        for vol in pool.listAllVolumes(0):
            try:
                vol.delete(0)
            except libvirt.libvirtError:
                pass  # gone meanwhile, or a file libvirt cannot delete: the pool goes anyway
        pool.destroy()
    if persistent:
        pool.undefine()
    return True


def reclaim_pools(conn: Connection) -> tuple[str, ...]:
    """Remove this user's lab pools whose labkit process is gone; their names."""
    removed = []
    for name in pool_names(conn):
        owner = runtime.name_owner(name)
        if owner is not None and owner != os.getpid() and not runtime.owner_alive(owner, os.geteuid()):
            if remove_pool(conn, name):
                removed.append(name)
    return tuple(removed)


def _check_directory(path: Path) -> None:
    if not path.is_dir():
        raise InvalidOptionError(f"the pool's directory {path} does not exist", "create it first, or pass none")
    st = os.statvfs(path)
    if st.f_flag & os.ST_RDONLY or not os.access(path, os.W_OK):
        raise ReadOnlyError(f"the pool's directory {path} is read-only: libvirt could not create volumes there",
                            "pass a writable directory, or none (labkit then makes a private one)")


class Pool:
    """A transient ``dir`` pool on this connection: volumes are files in :attr:`path`.  A context manager."""

    def __init__(self, conn: Connection, name: str = "pool", directory: Path | None = None) -> None:
        self.conn = conn
        self.name = runtime.lab_name(name, "pool")
        reclaim_pools(conn)
        if self.name in pool_names(conn):
            raise DuplicatePoolError(f"a storage pool named {self.name} already exists",
                                     "close the first one (pool.close()), or give this one another name")
        if directory is not None:
            _check_directory(Path(directory))
        self._scratch = runtime.scratch_dir("pool") if directory is None else None
        self.path: Path = Path(directory) if directory is not None else runtime.run_dir()
        if self._scratch is not None:
            self.path = self._scratch
        root = ET.Element("pool", type="dir")
        ET.SubElement(root, "name").text = self.name
        ET.SubElement(ET.SubElement(root, "target"), "path").text = str(self.path)
        self.xml = ET.tostring(root, encoding="unicode")
        try:
            self.raw = conn.call(f"create the pool {self.name}", conn.raw.storagePoolCreateXML, self.xml, 0)
        except BaseException:
            self._drop_scratch()
            raise
        self._token: int | None = runtime.release_at_exit(self.close)

    def create_volume(self, name: str, capacity_mib: int, fmt: str = "qcow2", backing: Volume | None = None) -> Volume:
        """``virsh vol-create``: a new image file in the pool (an overlay of ``backing`` if given)."""
        root = ET.Element("volume")
        ET.SubElement(root, "name").text = name
        ET.SubElement(root, "capacity", unit="MiB").text = str(capacity_mib)
        ET.SubElement(ET.SubElement(root, "target"), "format", type=fmt)
        if backing is not None:
            store = ET.SubElement(root, "backingStore")
            ET.SubElement(store, "path").text = str(backing.path)
            ET.SubElement(store, "format", type=backing.format)
        self.conn.call(f"create the volume {name} in {self.name}", self.raw.createXML,
                       ET.tostring(root, encoding="unicode"), 0)
        return self.volume(name)

    def refresh(self) -> tuple[str, ...]:
        """``virsh pool-refresh``: libvirt re-reads the directory (files copied in become volumes)."""
        self.conn.call(f"refresh {self.name}", self.raw.refresh, 0)
        return tuple(sorted(v.name() for v in self.raw.listAllVolumes(0)))

    def volume(self, name: str) -> Volume:
        """``virsh vol-dumpxml``: one volume, as libvirt describes it."""
        vol = self.conn.call(f"find the volume {name} in {self.name}", self.raw.storageVolLookupByName, name)
        root = ET.fromstring(vol.XMLDesc(0))
        backing = root.findtext("backingStore/path")
        fmt = root.find("target/format")
        return Volume(name, Path(root.findtext("target/path", "")),
                      fmt.get("type", "raw") if fmt is not None else "raw",
                      int(root.findtext("capacity", "0")), int(root.findtext("allocation", "0")),
                      Path(backing) if backing else None)

    @property
    def active(self) -> bool:
        try:
            return bool(self.raw.isActive())
        except libvirt.libvirtError:
            return False

    def close(self) -> None:
        """Delete the volumes and destroy the pool (idempotent); a private directory goes too."""
        if self._token is not None:
            runtime.forget(self._token)
            self._token = None
            try:
                remove_pool(self.conn, self.name)
            except libvirt.libvirtError:
                pass  # the daemon went away: its transient pool went with it
        self._drop_scratch()

    def _drop_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
