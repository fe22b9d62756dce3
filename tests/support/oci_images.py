"""TEST SUPPORT: a tiny container image made offline with umoci (no registry, no network):
an OCI image layout whose `latest` holds one file, /hello.txt. The bundle build and the
mirror-host tests copy it with skopeo wherever they need an image."""

from __future__ import annotations

import subprocess
from pathlib import Path


def tiny_image_layout(work: Path, text: str) -> Path:
    """work/img: an OCI layout, tag `latest`, whose only layer holds /hello.txt = `text`."""
    img = work / "img"
    (work / "hello.txt").write_text(text)
    for args in (
        ["init", "--layout", str(img)],
        ["new", "--image", f"{img}:latest"],
        ["insert", "--image", f"{img}:latest", str(work / "hello.txt"), "/hello.txt"],
    ):
        subprocess.run(["umoci", *args], check=True, capture_output=True, timeout=60)
    return img
