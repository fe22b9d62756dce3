#!/usr/bin/python3
"""nvidia-ctk stand-in (gpuprov TEST STAND-IN, not NVIDIA software).

runtime configure writes real docker/containerd configuration (merging, never clobbering the
user's settings); cdi generate writes a real CDI spec for the simulated GPUs, naming the driver
version, so a spec left from before a driver upgrade is detectable; cdi list reads specs back.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "@LIBREL@"))
import simlib  # noqa: E402

VERSION = "@VERSION@"
LIB_VERSION_FILE = simlib.ROOT / "usr/lib/x86_64-linux-gnu/nvidia-sim/libnvidia-ml.version"
CDI_DIRS = ("etc/cdi", "var/run/cdi")
SIM_STATE = ("usr/lib/gpuprov-sim", "etc/gpuprov-sim", "run/nvidia-sim", "etc/machine-id")


def info(msg: str) -> None:
    sys.stderr.write(f"INFO[0000] {msg}\n")


def error(msg: str) -> int:
    sys.stderr.write(f"ERRO[0000] {msg}\n")
    return 1


def host_path(given: str | None, default: str) -> tuple[Path, str]:
    """(where to write on this machine, the path as the host sees it)."""
    if given:
        return Path(given), given
    return simlib.ROOT / default.lstrip("/"), default


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def parse_opts(args: list[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    rest: list[str] = []
    it = iter(args)
    for a in it:
        if a.startswith("--"):
            key, eq, value = a[2:].partition("=")
            if not eq:
                if key in ("set-as-default", "cdi.enabled", "dry-run"):
                    value = "true"
                else:
                    value = next(it, "")
            opts[key] = value
        else:
            rest.append(a)
    return opts, rest


def containerd_dropin(plugin: str, version: int, default: bool) -> str:
    # containerd 1.x (config version 2) and 2.x (version 3) name the CRI runtime plugin differently.
    runtimes = f'plugins."{plugin}".containerd.runtimes'
    lines = [f"version = {version}", ""]
    if default:
        lines += [f'[plugins."{plugin}".containerd]', '  default_runtime_name = "nvidia"', ""]
    lines += [
        f"[{runtimes}.nvidia]",
        "  privileged_without_host_devices = false",
        '  runtime_engine = ""',
        '  runtime_root = ""',
        '  runtime_type = "io.containerd.runc.v2"',
        "",
        f"[{runtimes}.nvidia.options]",
        '  BinaryName = "/usr/bin/nvidia-container-runtime"',
    ]
    return "\n".join(lines) + "\n"


def configure_containerd(opts: dict[str, str]) -> int:
    main_path, _ = host_path(opts.get("config"), "/etc/containerd/config.toml")
    dropin_path, dropin_host = host_path(
        opts.get("drop-in-config"), "/etc/containerd/conf.d/99-nvidia.toml"
    )
    glob = str(Path(dropin_host).parent / "*.toml")
    text = main_path.read_text() if main_path.exists() else ""
    try:
        current = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return error(f"unable to load config: failed to parse {main_path}: {exc}")
    version = int(current.get("version", 2))
    plugin = "io.containerd.grpc.v1.cri" if version < 3 else "io.containerd.cri.v1.runtime"
    imports = list(current.get("imports", []))
    if glob not in imports and opts.get("drop-in-config") != str(main_path):
        imports.append(glob)
        new_line = "imports = " + json.dumps(imports)
        if "imports" in current:
            text = re.sub(r"(?ms)^imports\s*=\s*\[.*?\]", lambda _m: new_line, text, count=1)
        elif text.strip():
            # Top-level keys must come before the first table: insert after "version = N".
            match = re.search(r"(?m)^version\s*=.*$", text)
            if match:
                text = text[: match.end()] + "\n" + new_line + text[match.end() :]
            else:
                text = new_line + "\n" + text
        else:
            text = f"version = {version}\n{new_line}\n"
        updated = tomllib.loads(text)
        if current and {k: v for k, v in updated.items() if k != "imports"} != {
            k: v for k, v in current.items() if k != "imports"
        }:
            return error(
                f"refusing to rewrite {main_path}: could not add imports without changing other settings"
            )
        write_atomic(main_path, text)
        info(f"Wrote updated config to {main_path}")
    write_atomic(
        dropin_path, containerd_dropin(plugin, version, opts.get("set-as-default") == "true")
    )
    info(f"Wrote updated config to {dropin_path}")
    info("It is recommended that containerd daemon be restarted.")
    return 0


def configure_docker(opts: dict[str, str]) -> int:
    path, _ = host_path(opts.get("config"), "/etc/docker/daemon.json")
    try:
        config = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
    except json.JSONDecodeError as exc:
        return error(f"unable to load config: could not parse {path}: {exc}")
    if not isinstance(config, dict):
        return error(f"unable to load config: {path} is not a JSON object")
    runtimes = config.setdefault("runtimes", {})
    runtimes["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
    if opts.get("set-as-default") == "true":
        config["default-runtime"] = "nvidia"
    write_atomic(path, json.dumps(config, indent=4) + "\n")
    info(f"Wrote updated config to {path}")
    info("It is recommended that docker daemon be restarted.")
    return 0


def cdi_spec(version: str, prof: dict, strategy: str) -> str:
    gpus = simlib.gpus(prof)
    libdir = "/usr/lib/x86_64-linux-gnu"
    libs = ["libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libnvidia-nvvm.so"]
    out = ["---", "cdiVersion: 0.5.0", "containerEdits:", "  deviceNodes:"]
    out += [
        f"  - path: {d}"
        for d in (
            "/dev/nvidia-modeset",
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidiactl",
        )
    ]
    out += ["  env:", f"  - NVIDIA_CTK_LIBCUDA_DIR={libdir}", "  hooks:"]
    out += [
        "  - args:",
        "    - nvidia-cdi-hook",
        "    - create-symlinks",
        "    - --link",
        f"    - libcuda.so.1::{libdir}/libcuda.so",
        "    hookName: createContainer",
        "    path: /usr/bin/nvidia-cdi-hook",
        "  - args:",
        "    - nvidia-cdi-hook",
        "    - update-ldcache",
        "    - --folder",
        f"    - {libdir}",
        "    hookName: createContainer",
        "    path: /usr/bin/nvidia-cdi-hook",
        "  mounts:",
    ]
    for lib in libs:
        out += [
            f"  - containerPath: {libdir}/{lib}.{version}",
            f"    hostPath: {libdir}/{lib}.{version}",
            "    options:",
            "    - ro",
            "    - nosuid",
            "    - nodev",
            "    - bind",
        ]
    for binary in ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced"):
        out += [
            f"  - containerPath: /usr/bin/{binary}",
            f"    hostPath: /usr/bin/{binary}",
            "    options:",
            "    - ro",
            "    - nosuid",
            "    - nodev",
            "    - bind",
        ]
    # STAND-IN ONLY: the simulated driver is these files (the programs' shared code, the
    # GPU profile, the loaded module, the machine id the GPU UUIDs derive from), so they
    # travel into the container with the binaries, as a real driver's state travels in its
    # device nodes. The image only needs what the programs run on (python3, libc).
    for sim in SIM_STATE:
        out += [
            f"  - containerPath: /{sim}",
            f"    hostPath: /{sim}",
            "    options:",
            "    - ro",
            "    - nosuid",
            "    - nodev",
            "    - bind",
        ]
    # Like the real generator: what the host does not have is left out of the spec.
    kept, i = [], out.index("  mounts:") + 1
    kept = out[:i]
    for j in range(i, len(out), 7):
        entry = out[j : j + 7]
        host_file = simlib.ROOT / entry[1].split("hostPath: /", 1)[1]
        if host_file.exists():
            kept += entry
    out = kept
    out.append("devices:")
    names = []
    for g in gpus:
        name = {"uuid": g.uuid, "type-index": f"gpu{g.index}"}.get(strategy, str(g.index))
        names.append(name)
        out += [
            "- containerEdits:",
            "    deviceNodes:",
            f"    - path: /dev/nvidia{g.index}",
            f'  name: "{name}"',
        ]
    out += ["- containerEdits:", "    deviceNodes:"]
    out += [f"    - path: /dev/nvidia{g.index}" for g in gpus]
    out += ['  name: "all"', "kind: nvidia.com/gpu"]
    return "\n".join(out) + "\n"


def cdi_generate(opts: dict[str, str]) -> int:
    lib = simlib.read(LIB_VERSION_FILE)
    loaded = simlib.loaded_module()
    if lib is None:
        return error(
            "failed to generate CDI spec: failed to create device CDI specs: failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND"
        )
    if loaded is None:
        return error(
            "failed to generate CDI spec: failed to create device CDI specs: failed to initialize NVML: ERROR_DRIVER_NOT_LOADED"
        )
    if loaded != lib:
        return error(
            "failed to generate CDI spec: failed to create device CDI specs: failed to initialize NVML: Driver/library version mismatch"
        )
    spec = cdi_spec(lib, simlib.profile(), opts.get("device-name-strategy", "index"))
    info("Using driver version " + lib)
    output = opts.get("output")
    if not output:
        sys.stdout.write(spec)
        return 0
    path = (
        Path(output)
        if not output.startswith("/") or str(simlib.ROOT) == "/"
        else simlib.ROOT / output.lstrip("/")
    )
    write_atomic(path, spec)
    info(f"Generated CDI spec with version 0.5.0 to {output}")
    return 0


def cdi_list() -> int:
    found = []
    for d in CDI_DIRS:
        directory = simlib.ROOT / d
        for spec in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.json")):
            text = spec.read_text()
            kind = re.search(r'(?m)^kind:\s*"?([^"\n]+)"?', text)
            if not kind:
                continue
            found += [
                f"{kind.group(1)}={n}"
                for n in re.findall(r'(?m)^  name:\s*"?([^"\n]+?)"?\s*$', text)
            ]
    info(f"Found {len(found)} CDI devices")
    for name in found:
        print(name)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] in (["--version"], ["-v"]):
        print(f"NVIDIA Container Toolkit CLI version {VERSION}")
        return 0
    opts, rest = parse_opts(argv)
    if rest == ["runtime", "configure"]:
        runtime = opts.get("runtime", "docker")
        if runtime == "containerd":
            return configure_containerd(opts)
        if runtime == "docker":
            return configure_docker(opts)
        return error(f"unrecognized runtime '{runtime}'")
    if rest == ["cdi", "generate"]:
        return cdi_generate(opts)
    if rest == ["cdi", "list"]:
        return cdi_list()
    return error("unsupported command for the gpuprov stand-in nvidia-ctk: " + " ".join(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
