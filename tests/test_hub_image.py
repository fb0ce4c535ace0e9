"""Past one host: the repo2docker files (environment.yml + apt.txt + postBuild + start) an image is built from.

Building the image and running it on Kubernetes cannot be done here (no
docker, no cluster); what can: the files agree with the project's setup, and
postBuild, run with a fresh HOME (the guest kernel taken from the cache setup made) and the lab's venv
on PATH, builds the shared guest image that `start` then points every server at.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent


def learner_apt_packages() -> set[str]:
    """The packages scripts/setup.sh installs for a learner (its APT_PACKAGES array)."""
    text = (TOP / "scripts/setup.sh").read_text()
    block = re.search(r"^APT_PACKAGES=\((.*?)^\)", text, re.S | re.M).group(1)
    return {word for line in block.splitlines() for word in line.split("#")[0].split()}


def test_apt_txt_holds_what_a_learner_gets_from_setup_minus_the_compilers() -> None:
    listed = set((TOP / "apt.txt").read_text().split())
    # conda-forge ships libvirt-python built: the image needs no compiler or headers, and the venv's python3
    assert listed == learner_apt_packages() - {"libvirt-dev", "pkg-config", "gcc", "python3-dev", "python3",
                                               "python3-venv", "ca-certificates"}
    assert "chromium" not in listed


def test_post_build_makes_the_shared_image_and_start_points_servers_at_it(tmp_path: Path) -> None:
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir(), home.mkdir()
    for name in ("postBuild", "start"):
        shutil.copy2(TOP / name, repo / name)
    env = {"HOME": str(home), "PATH": f"{TOP / '.venv/bin'}:/usr/bin:/bin", "LANG": "C.UTF-8",
           "XDG_CACHE_HOME": str(Path.home() / ".cache")}  # no download: setup cached the kernel
    built = subprocess.run([str(repo / "postBuild")], env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    settings = home / ".jupyter/lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    assert json.loads(settings.read_text())["fetchNews"] == "false"
    viewers = home / ".jupyter/lab/user-settings/@jupyterlab/docmanager-extension/plugin.jupyterlab-settings"
    assert json.loads(viewers.read_text())["defaultViewers"] == {"markdown": "Markdown Preview"}  # the glossary
    fresh = {k: v for k, v in env.items() if k != "XDG_CACHE_HOME"}  # a server of the image: nothing of its own
    info = subprocess.run([str(repo / "start"), "labkit", "image", "info", "--json"], env=fresh,
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    found = json.loads(info.stdout)
    assert found["shared_caches"] == [str(repo / ".image-cache")]
    assert found["image"]["kernel"].startswith(str(repo / ".image-cache")), found["image"]
    assert found["image"]["initrd"].startswith(str(repo / ".image-cache")), found["image"]
