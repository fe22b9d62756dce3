"""Capture what docker and podman print when verify's GPU container cannot start, one file
per runtime and fault, for tests/fixtures/container/ (gpuprov.verify.node's
CONTAINER_FAILURES is tested on them).

Run against the Debian 13 VM that tests/deploys/test_container_vm.py leaves running with
GPUPROV_KEEP_VMS=1 (docker and podman applied, the image pulled by both, the registry of
the lab's bridge started again on the port the VM's settings name):

    python scripts/capture_container_failures.py --ssh "$(ssh command the test printed)" \\
        --image HOST:PORT/gpuprov/verify@sha256:... --out tests/fixtures/container

Each file is the `container` section of the real VerifyProbe script's output on the VM,
as verify reads it: begin marker, the command line, what the runtime printed, end marker
with the exit code. Every fault is undone before the next.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path

from gpuprov.verify.node import VerifyProbe

SPEC = "/etc/cdi/nvidia.yaml"
DRIVER, OLD_DRIVER = "580.95.05", "570.133.20"
MISSING_DIGEST = "sha256:" + "0" * 64

# fault -> (break it, undo it); the image reference is replaced for "not-pullable".
FAULTS: dict[str, tuple[str, str]] = {
    "ok": ("true", "true"),
    "stale-spec": (
        f"cp {SPEC} /root/spec.good && sed -i 's/{DRIVER}/{OLD_DRIVER}/g' {SPEC}",
        f"cp /root/spec.good {SPEC}",
    ),
    "device-missing": (
        f"""cp {SPEC} /root/spec.good && sed -i 's/^  name: "all"$/  name: "gone"/' {SPEC}""",
        f"cp /root/spec.good {SPEC}",
    ),
    "host-device-missing": (
        "rm /dev/nvidia-modeset",
        "mknod -m 644 /dev/nvidia-modeset c 195 254",
    ),
    "not-pullable": ("true", "true"),
    "daemon-down": (
        "systemctl stop docker.socket docker.service",
        "systemctl start docker.service",
    ),
}


def container_section(output: str) -> str:
    lines = output.splitlines()
    start = lines.index("@@gpuprov:begin container")
    end = next(
        i for i in range(start, len(lines)) if lines[i].startswith("@@gpuprov:end container")
    )
    return "\n".join(lines[start : end + 1]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ssh", required=True, help="ssh command line that reaches the VM as root")
    ap.add_argument("--image", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    ssh = shlex.split(args.ssh)

    def on_vm(cmd: str) -> str:
        proc = subprocess.run([*ssh, cmd], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"{cmd}: exit {proc.returncode}: {proc.stdout}{proc.stderr}")
        return proc.stdout

    args.out.mkdir(parents=True, exist_ok=True)
    for runtime in ("docker", "podman"):
        for fault, (do, undo) in FAULTS.items():
            if fault == "daemon-down" and runtime != "docker":
                continue  # podman has no daemon
            image = args.image
            if fault == "not-pullable":
                image = image.split("@")[0] + "@" + MISSING_DIGEST
            on_vm(do)
            try:
                out = on_vm(VerifyProbe().command(runtime=runtime, image=image))
            finally:
                on_vm(undo)
            path = args.out / f"{runtime}-{fault}.txt"
            path.write_text(container_section(out))
            print(f"{path}: {path.read_text().splitlines()[-2][:160]}")


if __name__ == "__main__":
    main()
