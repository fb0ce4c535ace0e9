"""Notebook 04b's storage exercises: predict an overlay's growth; attach a second disk by XML.

The first checker boots the guest and measures the overlay file after its
writes; the second hands the learner's ``<disk>`` to the real libvirt daemon
and reads back what it stored.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from labkit import images, virt
from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.qemu import disk as qdisk


@exercise("overlay-growth")
def overlay_growth(prediction_kib: float | None, growth: qdisk.Growth) -> Feedback:
    """Compare the learner's prediction with what the overlay grew in the run just made (``measure_growth``)."""
    if prediction_kib is None:
        return Feedback(False, _("set my_prediction_kib to a number of KiB"),
                        _("qemu-img info above printed the overlay's cluster size"))
    if isinstance(prediction_kib, bool) or not isinstance(prediction_kib, (int, float)):
        return Feedback(False, _("my_prediction_kib is a {type}, not a number").format(
            type=type(prediction_kib).__name__), _("a number of KiB, e.g. 100"))
    grown, cluster_kib = growth.grown // 1024, growth.cluster_size // 1024
    slack = max(3 * cluster_kib, grown // 10)  # qcow2's own tables (an L2 table, refcounts) take a cluster or two
    if abs(prediction_kib - grown) <= slack:
        return Feedback(True, _("{writes} writes of 4 KiB grew the overlay by {grown} KiB here; you predicted "
                                "{prediction} KiB").format(writes=growth.writes, grown=grown,
                                                           prediction=prediction_kib))
    hint = (_("qcow2 allocates whole clusters of {cluster_kib} KiB: a 4 KiB write into a fresh cluster allocates "
              "all of it (the rest copied from the backing file)") if prediction_kib < grown
            else _("each write lands in one cluster; the rest of the disk stays in the backing file"))
    return Feedback(False, _("{writes} writes of 4 KiB grew the overlay by {grown} KiB here, not {prediction}").format(
        writes=growth.writes, grown=grown, prediction=prediction_kib), hint.format(cluster_kib=cluster_kib))


@exercise("second-disk")
def second_disk(disk_xml: str | None, volume: Path, image: images.GuestImage) -> Feedback:
    """Does libvirt accept ``disk_xml`` as the guest's second disk: ``volume`` (qcow2) as virtio ``vdb``?"""
    if not disk_xml or not isinstance(disk_xml, str):
        return Feedback(False, _("set my_disk_xml to a <disk> element, as text"),
                        "https://libvirt.org/formatdomain.html#hard-drives-floppy-disks-cdroms")
    try:
        ET.fromstring(disk_xml)
    except ET.ParseError as exc:
        return Feedback(False, _("my_disk_xml is not well-formed XML: {error}").format(error=exc),
                        _("every tag closed, every attribute value quoted"))
    with virt.connect() as conn:
        domain = conn.define(virt.DomainSpec.for_image("disks", image, memory_mib=128))
        try:
            domain.raw.attachDeviceFlags(disk_xml, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            stored = ET.fromstring(domain.raw.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError as exc:
            return Feedback(False, _("libvirt refused the disk: {error}").format(error=exc.get_error_message()),
                            _("a <disk type='file' device='disk'> with <driver>, <source file=...> and <target>"))
        except LabkitError as exc:
            return Feedback(False, str(exc))
        finally:
            domain.close()
    disks = stored.findall("devices/disk")
    found = next((d for d in disks if d.find("target") is not None and d.find("target").get("dev") == "vdb"), None)  # type: ignore[union-attr]
    if found is None:
        return Feedback(False, _("libvirt stored the disk, but not as vdb"), "<target dev='vdb' bus='virtio'/>")
    problems = []
    if found.find("source") is None or found.find("source").get("file") != str(volume):  # type: ignore[union-attr]
        problems.append(_("its source is not the volume {path}").format(path=volume))
    if found.find("target").get("bus") != "virtio":  # type: ignore[union-attr]
        problems.append(_("its bus is not virtio"))
    if found.find("driver") is None or found.find("driver").get("type") != "qcow2":  # type: ignore[union-attr]
        problems.append(_("its driver type is not qcow2 (QEMU would show the guest qcow2's own bytes)"))
    if problems:
        return Feedback(False, _("libvirt took the disk, but {problems}").format(problems="; ".join(problems)),
                        "<driver name='qemu' type='qcow2'/>, <source file='...'/>, <target dev='vdb' bus='virtio'/>")
    return Feedback(True, _("libvirt stored your disk: {path} as the guest's virtio disk vdb, read as qcow2").format(
        path=volume))
