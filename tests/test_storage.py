"""Storage for the tiny guest: qemu-img's overlays and snapshots, a disk in a real guest, libvirt pools.

qemu-img, QEMU and the libvirt daemon are the real ones.  Bad inputs give one
clear labkit error; pools and scratch folders are gone after success, error
and the kill of their owner.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labkit import cleanup, images, runtime, virt
from labkit.errors import InvalidOptionError, ReadOnlyError
from labkit.exercises import storage as exercises
from labkit.images import disk
from labkit.qemu import disk as qdisk
from labkit.virt import storage


@pytest.fixture()
def overlay(tmp_path: Path) -> tuple[Path, Path]:
    base = disk.create_base(tmp_path / "base.raw", 4)
    overlay = tmp_path / "overlay.qcow2"
    disk.create_overlay(base, overlay)
    return base, overlay


def test_the_chain_snapshot_and_revert(overlay: tuple[Path, Path]) -> None:
    base, top = overlay
    chain = disk.chain(top)
    assert [(c.format, c.backing) for c in chain] == [("qcow2", base.resolve()), ("raw", None)]
    assert chain[0].virtual_size == 4 * 2**20 and chain[0].cluster_size == 65536
    assert disk.snapshot(top, "clean") == ("clean",)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 1M 4k", str(top)], check=True, capture_output=True)
    assert not disk.identical(base, top)
    disk.revert(top, "clean")
    assert disk.identical(base, top)


def test_a_missing_path_or_a_file_that_is_no_qcow2_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(disk.DiskImageError, match="does not exist"):
        disk.info(tmp_path / "nope.qcow2")
    text = tmp_path / "notes.txt"
    text.write_text("not a disk\n")
    with pytest.raises(disk.DiskImageError, match="not a qcow2 image"):
        disk.require_qcow2(text)
    with pytest.raises(InvalidOptionError, match="size_mib"):
        disk.create_base(tmp_path / "big.raw", 0)


def test_a_missing_backing_file_is_named_before_qemu_runs(overlay: tuple[Path, Path]) -> None:
    base, top = overlay
    base.unlink()
    with pytest.raises(disk.DiskImageError, match="backing file is gone"):
        disk.chain(top)
    with pytest.raises(disk.DiskImageError, match="backing file is gone"):
        asyncio.run(qdisk.boot_with_disk(images.tiny_guest(fetch=False, progress=False), top, "true"))


def test_the_guest_writes_through_virtio_blk_and_only_the_overlay_grows() -> None:
    """One boot: 2 scattered 4 KiB writes allocate whole 64 KiB clusters; the exercise's checker agrees."""
    image = images.tiny_guest(fetch=False, progress=False)
    growth = asyncio.run(qdisk.measure_growth(image, 2))
    assert growth.cluster_size == 65536
    assert 2 * growth.cluster_size <= growth.grown <= 5 * growth.cluster_size
    assert exercises.overlay_growth(2 * 64, growth).solved
    naive = exercises.overlay_growth(2 * 4, growth)
    assert not naive.solved and "clusters" in naive.hint


@pytest.fixture(scope="module")
def conn():
    with virt.connect() as c:
        yield c


def test_a_pool_and_an_overlay_volume(conn) -> None:
    with storage.Pool(conn, "t-pool") as pool:
        disk.create_base(pool.path / "base.raw", 2)
        assert pool.refresh() == ("base.raw",)
        base = pool.volume("base.raw")
        vol = pool.create_volume("top.qcow2", 2, backing=base)
        assert (vol.format, vol.backing, vol.capacity) == ("qcow2", base.path, 2 * 2**20)
        assert disk.chain(vol.path)[1].path == base.path
        with pytest.raises(storage.DuplicatePoolError, match="already exists"):
            storage.Pool(conn, "t-pool")
        folder = pool.path
    assert pool.name not in storage.pool_names(conn) and not folder.exists()


def test_a_pool_on_a_read_only_directory_is_refused(conn, tmp_path: Path) -> None:
    readonly = tmp_path / "ro"
    readonly.mkdir()
    if os.geteuid() != 0:
        readonly.chmod(0o555)
    else:  # root writes through file modes: a read-only mount is what stops it
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
    try:
        with pytest.raises(ReadOnlyError, match="read-only"):
            storage.Pool(conn, "t-ro", readonly)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(readonly)], check=True)
    assert not any(n.startswith(runtime.prefix() + "t-ro-") for n in storage.pool_names(conn))


def test_a_pool_whose_owner_was_killed_is_reclaimed(conn) -> None:
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from labkit import virt
        from labkit.virt import storage
        conn = virt.connect()
        pool = storage.Pool(conn, "t-killed")
        print(pool.name, pool.path, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    name, folder = child.stdout.readline().split()
    assert name in storage.pool_names(conn)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert name in storage.pool_names(conn)  # the daemon keeps a transient pool until someone destroys it
    found = [r for r in cleanup.cleanup(kinds=("pool",), dry_run=True).items if r.name == name]
    assert [r.action for r in found] == ["would remove"]
    with storage.Pool(conn, "t-next"):
        assert name not in storage.pool_names(conn)
    orphans = runtime.orphan_scratch_dirs(runtime.run_dir())  # what the next process and labkit cleanup remove
    assert Path(folder) in orphans
    shutil.rmtree(folder)


def test_the_second_disk_exercise_asks_the_daemon(conn, tmp_path: Path) -> None:
    image = images.tiny_guest(fetch=False, progress=False)
    volume = tmp_path / "second.qcow2"
    disk.create_overlay(disk.create_base(tmp_path / "base.raw", 1), volume)
    right = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{volume}'/>"
             "<target dev='vdb' bus='virtio'/></disk>")
    assert exercises.second_disk(right, volume, image).solved
    wrong_bus = right.replace("bus='virtio'", "bus='sata'")
    feedback = exercises.second_disk(wrong_bus, volume, image)
    assert not feedback.solved and "virtio" in feedback.message
    assert not exercises.second_disk("<disk type='file'>", volume, image).solved


def test_a_disk_workspace_whose_owner_was_killed_is_an_orphan() -> None:
    """Overlays live in a `disk-<pid>-…` scratch dir: once its owner dies, cleanup and the next run take it."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import time
        from labkit.images import disk
        from labkit.qemu import disk as qdisk
        ws = qdisk.Workspace()
        disk.create_overlay(disk.create_base(ws.path / "base.raw", 1), ws.path / "top.qcow2")
        print(ws.path, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    folder = Path(child.stdout.readline().strip())
    assert (folder / "top.qcow2").is_file() and folder not in runtime.orphan_scratch_dirs(runtime.run_dir())
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert folder in runtime.orphan_scratch_dirs(runtime.run_dir())
    shutil.rmtree(folder)


def test_a_disk_workspace_is_removed_on_error() -> None:
    with pytest.raises(RuntimeError), qdisk.Workspace() as ws:
        disk.create_base(ws.path / "base.raw", 1)
        raise RuntimeError("the lesson failed half-way")
    assert not ws.path.exists()


def test_setup_fetches_every_driver_the_lessons_load() -> None:
    from labkit.images import modules
    from labkit.qemu import net

    used = {m for _, _, names in qdisk.INTERFACES.values() for m in names} | {
        m for _, names in net.NICS.values() for m in names}
    assert used == set(modules.LAB_DRIVERS)
    assert {p.stem for p in modules.prepare()} >= used  # cached next to the kernel, dependencies included
