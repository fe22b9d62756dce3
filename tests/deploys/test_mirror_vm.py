"""The mirror host on a real Debian VM, fed by a real bundle, converged by `gpuprov apply`.

A bundle is built for the test with `build_bundle` (nginx and docker-registry resolved by
apt against Debian's archive, a tiny image made offline with umoci and pulled by skopeo
from a registry on loopback, a tiny model, gpuprov's wheels), exported to a media
directory, then, on one VM (mirror01):

- `gpuprov apply` before any import refuses the mirror host, saying to import a bundle;
- `gpuprov bundle import` puts the bundle there; `gpuprov apply` converges the host; a
  second apply changes nothing;
- from this machine (the control node), over the VM's private address: apt's InRelease
  is served and verifies against the bundle key; skopeo reads the image's manifest from
  the registry with the bundle's digest, and a push is refused; huggingface_hub downloads
  the model file through HF_ENDPOINT;
- the units run as the service user, cannot write their content, log to journald,
  Debian's own nginx and registry units are masked; `systemctl kill -s KILL` of each
  unit: systemd restarts it and it answers again.

Marked `debian_archive` too: the bundle build needs Debian's archive (cached after once).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Building the bundle, booting the VM and the first apply (pip under emulation) are one
# module fixture: longer than the default per-test timeout.
pytestmark = [
    pytest.mark.vm,
    pytest.mark.slow,
    pytest.mark.debian_archive,
    pytest.mark.timeout(3600),
]

if os.geteuid() != 0 or not shutil.which("qemu-system-x86_64"):
    pytest.skip("VM tests need root and qemu (make system-deps)", allow_module_level=True)
for tool in ("skopeo", "umoci", "docker-registry", "gpgv"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (make system-deps)", allow_module_level=True)

APT_PORT, REGISTRY_PORT, MODELS_PORT = 8081, 5001, 8091  # not the defaults: from the inventory
UNITS = ("gpuprov-apt.service", "gpuprov-registry.service", "gpuprov-models.service")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
GPUPROV = [sys.executable, "-c", "from gpuprov.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A real bundle on media, its key, and what it holds (image digest, model bytes)."""
    from gpuprov.aptrepo import generate_key
    from gpuprov.bundle.build import BuildOptions, build_bundle
    from gpuprov.bundle.export import export_bundle
    from gpuprov.inventory.loader import load_inventory
    from gpuprov.testbed.rootfs import cache_dir, debian_mirror

    work = tmp_path_factory.mktemp("bundle")
    port = _free_port()
    (work / "registry.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work / 'upstream'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(work / "registry.log", "w")  # noqa: SIM115 - closed below
    upstream = subprocess.Popen(
        ["docker-registry", "serve", str(work / "registry.yml")], stdout=log, stderr=log
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        img = work / "img"
        (work / "hello.txt").write_text("hello from the mirror's registry\n")
        for args in (
            ["init", "--layout", str(img)],
            ["new", "--image", f"{img}:latest"],
            ["insert", "--image", f"{img}:latest", str(work / "hello.txt"), "/hello.txt"],
        ):
            subprocess.run(["umoci", *args], check=True, capture_output=True, timeout=60)
        image = f"127.0.0.1:{port}/test/tiny:1.0"
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{img}:latest", f"docker://{image}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        model = work / "model"
        model.mkdir()
        (model / "config.json").write_text('{"model_type": "tiny"}\n')
        (model / "weights.bin").write_bytes(bytes(range(256)) * 64)
        key = generate_key(work / "gnupg", "Site bundles", "bundle@gpuprov.invalid")
        keyring = key.export_public(work / "bundle.gpg")
        mirror = debian_mirror()
        inventory = work / "build.yaml"
        inventory.write_text(f"""\
cluster:
  name: mirror-vm
  stack: {{os: debian12, driver: {{branch: "580", version: "580.95.05"}}}}
  mirror: {{host: mirror01}}
  bundle:
    targets:
      debian12:
        sources:
          - {{url: "{mirror}", suites: [bookworm, bookworm-updates], components: [main], keyring: {DEBIAN_KEYRING}}}
          - {{url: "{mirror.rstrip("/")}-security", suites: [bookworm-security], components: [main], keyring: {DEBIAN_KEYRING}}}
        base: minimal
    images: ["{image}"]
    insecure_registries: ["127.0.0.1:{port}"]
    models:
      - {{repo: acme/tiny, source: {model}, revision: main}}
    python: ["3.11"]
groups:
  mirror:
    role: mirror
    hosts:
      mirror01: {{address: 10.0.0.5}}
""")
        out = work / "bundle"
        opts = BuildOptions(out=out, cache=cache_dir() / "bundle", key_home=key.home)
        build_bundle(load_inventory(inventory), opts)
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
        log.close()
    media = work / "media"  # a mounted stick stands in as a directory
    media.mkdir()
    export_bundle(out, media)
    index = json.loads((out / "oci/index.json").read_text())
    return {
        "media": media,
        "keyring": keyring,
        "image_digest": index["manifests"][0]["digest"],
        "weights": (model / "weights.bin").read_bytes(),
        "dir": out,
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bundle):
    from ruamel.yaml import YAML

    from gpuprov.testbed.vms import VMLab

    with VMLab(1, names=["mirror01"], memory_mb=1024, boot_timeout=600) as lab:
        path = lab.write_inventory(tmp_path_factory.mktemp("inv") / "inventory.yaml", mirror=True)
        yaml = YAML()
        doc = yaml.load(path.read_text())
        doc["cluster"]["mirror"].update(
            apt_port=APT_PORT, registry_port=REGISTRY_PORT, models_port=MODELS_PORT
        )
        del doc["groups"]["gpu"]  # one VM: the control node is the mirror's client
        # The VM's disk is small; the 10 GB floor is the GPU stack's.
        doc["groups"]["mirror"]["vars"] = {"gpuprov_min_free_gb": 0.5}
        with path.open("w") as fh:
            yaml.dump(doc, fh)
        lab.inventory = path
        lab.address = lab.vm("mirror01").address
        yield lab


def gpuprov(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """Run the CLI; its output also goes to $GPUPROV_TEST_LOG (if set), to watch it live."""
    log = os.environ.get("GPUPROV_TEST_LOG")
    if not log:
        return subprocess.run(
            [*GPUPROV, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    with open(log, "a") as fh:
        fh.write(f"\n$ gpuprov {' '.join(args)}\n")
        fh.flush()
        done = subprocess.run(
            [*GPUPROV, *args], stdout=subprocess.PIPE, stderr=fh, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        fh.write(done.stdout)
    text = Path(log).read_text()
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout, text[-20000:])


def run(vm, cmd: str, timeout: float = 300) -> str:
    out = vm.ssh(cmd, timeout=timeout)
    assert out.returncode == 0, f"{vm.name}: {cmd}\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def converged(lab, bundle):
    """Refused before an import, then imported and applied; returns the two applies."""
    refused = gpuprov("apply", str(lab.inventory), "--yes")
    imported = gpuprov(
        "bundle", "import", str(bundle["media"]), str(lab.inventory), "--keyring", str(bundle["keyring"])
    )  # fmt: skip
    assert imported.returncode == 0, imported.stdout + imported.stderr
    first = gpuprov("apply", str(lab.inventory), "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    second = gpuprov("apply", str(lab.inventory), "--yes", "--output", "json")
    return {"refused": refused, "first": first, "second": second}


def test_apply_before_any_import_refuses_and_says_what_to_do(converged):
    refused = converged["refused"]
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0, text
    assert "no bundle imported on the mirror host" in text and "gpuprov bundle import" in text
    assert "Traceback" not in text


def test_second_apply_changes_nothing(converged):
    second = converged["second"]
    assert second.returncode == 0, second.stdout + second.stderr
    doc = json.loads(second.stdout)
    assert doc["summary"]["status"] == "up-to-date", doc
    assert doc["summary"]["changed"] == 0


def test_apt_inrelease_is_served_and_signed_by_the_bundle_key(lab, bundle, converged, tmp_path):
    import urllib.request

    url = f"http://{lab.address}:{APT_PORT}/debian12/dists/gpuprov/InRelease"
    body = urllib.request.urlopen(url, timeout=30).read()
    (tmp_path / "InRelease").write_bytes(body)
    check = subprocess.run(
        ["gpgv", "--keyring", str(bundle["keyring"]), str(tmp_path / "InRelease")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert b"Packages" in body


def test_registry_serves_the_bundles_image_and_refuses_a_push(lab, bundle, converged, tmp_path):
    ref = f"docker://{lab.address}:{REGISTRY_PORT}/test/tiny:1.0"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", ref],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert raw.returncode == 0, raw.stderr
    import hashlib

    assert "sha256:" + hashlib.sha256(raw.stdout).hexdigest() == bundle["image_digest"]
    pushed = subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
         ref, f"docker://{lab.address}:{REGISTRY_PORT}/evil/image:1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert pushed.returncode != 0, pushed.stdout


def test_models_download_through_hf_endpoint(lab, bundle, converged, tmp_path):
    script = (
        "from huggingface_hub import hf_hub_download; import sys; "
        "print(hf_hub_download('acme/tiny', 'weights.bin', cache_dir=sys.argv[1]))"
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://{lab.address}:{MODELS_PORT}",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
    }
    got = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "hf")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert Path(got.stdout.strip().splitlines()[-1]).read_bytes() == bundle["weights"]


def show(vm, unit: str) -> dict[str, str]:
    props = (
        "User,ProtectSystem,ReadOnlyPaths,Restart,MainPID,ActiveState,UnitFileState,NoNewPrivileges"
    )
    out = run(vm, f"systemctl show {unit} -p {props}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_units_are_hardened_and_packaged_units_masked(lab, converged):
    vm = lab.vm("mirror01")
    for unit in UNITS:
        props = show(vm, unit)
        assert props["ActiveState"] == "active" and props["UnitFileState"] == "enabled", props
        assert props["User"] == "gpuprov-mirror" and props["Restart"] == "on-failure"
        assert props["ProtectSystem"] == "strict" and props["NoNewPrivileges"] == "yes"
        pid = props["MainPID"]
        assert run(vm, f"ps -o user= -p {pid}").strip() == "gpuprov-mirror"
        # Inside the service's own mount namespace, even root cannot write the content.
        denied = vm.ssh(f"nsenter -t {pid} -m touch /srv/gpuprov/current/gpuprov-write-test")
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied
    assert run(vm, "getent passwd gpuprov-mirror").strip().endswith(":/usr/sbin/nologin")
    for unit in ("nginx.service", "docker-registry.service"):
        assert vm.ssh(f"systemctl is-enabled {unit}").stdout.strip() == "masked"
    listening = run(vm, "ss -Hltn")
    for port in (APT_PORT, REGISTRY_PORT, MODELS_PORT):
        assert f"{lab.address}:{port}" in listening, listening
        assert f"0.0.0.0:{port}" not in listening and f"*:{port}" not in listening
    assert ":80 " not in listening and ":5000 " not in listening, listening
    logs = run(vm, "journalctl -t gpuprov_apt -o cat --no-pager")
    assert "InRelease" in logs, logs  # the apt test's request, logged by nginx to journald


def answers(vm, port: int) -> bool:
    probe = vm.ssh(
        "python3 -c 'import urllib.request as u, sys; "
        f'u.urlopen("http://{vm.address}:{port}/" + sys.argv[1], timeout=5)\' '
        + {
            APT_PORT: "debian12/dists/gpuprov/InRelease",
            REGISTRY_PORT: "v2/",
            MODELS_PORT: "healthz",
        }[port]
    )
    return probe.returncode == 0


@pytest.mark.parametrize(
    "unit,port", list(zip(UNITS, (APT_PORT, REGISTRY_PORT, MODELS_PORT), strict=True))
)
def test_a_killed_service_is_restarted_by_systemd(lab, converged, unit, port):
    vm = lab.vm("mirror01")
    before = show(vm, unit)["MainPID"]
    run(vm, f"systemctl kill -s KILL {unit}")
    deadline = time.monotonic() + 120
    while True:
        props = show(vm, unit)
        if props["MainPID"] not in ("0", before) and answers(vm, port):
            break
        assert time.monotonic() < deadline, f"no restart after SIGKILL: {props}"
        time.sleep(2)
    assert props["ActiveState"] == "active"
