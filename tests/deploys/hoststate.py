"""Build HostState script output (the sections host_state.sh prints) for plan tests."""

from __future__ import annotations

OS_RELEASE = {
    "debian12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"',
    "debian13": 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"',
    "ubuntu2204": 'PRETTY_NAME="Ubuntu 22.04.5 LTS"\nID=ubuntu\nVERSION_ID="22.04"\nID_LIKE=debian',
    "ubuntu2404": 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_ID="24.04"\nID_LIKE=debian',
    "rhel9": 'PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\nID="rocky"\nVERSION_ID="9.4"\nID_LIKE="rhel centos fedora"',
}


def section(name: str, body: str, rc: int = 0) -> str:
    return f"@@gpuprov:begin {name}\n{body}\n@@gpuprov:end {name} {rc}\n"


def host_state_output(
    os_key: str = "debian12",
    *,
    packages: dict[str, str] | None = None,
    held: tuple[str, ...] = (),
    module: str | None = None,
    nouveau: bool = False,
    headers: bool = True,
    services: dict[str, tuple[str, str]] | None = None,
    cuda_link: str | None = None,
    cuda_alternative: tuple[str, str] | None = None,
    kernel: str = "6.1.0-26-amd64",
    versionlock: list[str] | None = None,
) -> str:
    pkgs = "\n".join(
        f"{n}\t{v}\t{'hold' if n in held else 'install'} ok installed"
        for n, v in sorted((packages or {}).items())
    )
    units = ("nvidia-persistenced", "nvidia-fabricmanager", "nvidia-dcgm", "containerd", "docker")
    svc = services or {}
    svc_lines = "\n".join(
        f"{u} {svc.get(u, ('inactive', '-'))[0]} {svc.get(u, ('-', '-'))[1]}" for u in units
    )
    out = section("os-release", OS_RELEASE[os_key])
    out += section("kernel", kernel)
    out += section("headers", "yes" if headers else "no")
    out += section("secureboot", "", 127)
    out += section("nouveau", "loaded" if nouveau else "absent")
    out += section("lspci", "", 127)
    out += section("nvidia-module", module or "", 0 if module else 127)
    out += section("nvswitch", "", 127)
    out += section("packages", pkgs)
    out += section("holds", "\n".join(held))
    if versionlock is not None:  # lines of /etc/dnf/plugins/versionlock.list
        out += section("versionlock", "\n".join(versionlock))
    out += section("df", "", 127)
    out += section("nvidia-smi", "", 127)
    out += section("services", svc_lines)
    out += section("cdi", "", 127)
    cuda = [f"link {cuda_link}"] if cuda_link else []
    if cuda_alternative:
        cuda.append(f"alt {cuda_alternative[0]} {cuda_alternative[1]}")
    out += section("cuda", "\n".join(cuda))
    return out
