"""The far side of the air gap for RHEL hosts, with real components: the RHEL bundle that
test_build_rhel.py builds (its fixtures), served by a real nginx with the mirror host's
rendered configuration (deploys/mirror_server.py) as the unprivileged user; real dnf in
an installroot reading it through the exact `.repo` file and key files the mirror client
deploy writes (deploys/mirror_client.py, decoded from its planned commands), and running
the driver deploy's own commands (deploys/driver.py: module enable, the exact transaction,
versionlock) through `dnf`/`rpm` wrappers that only add the installroot. Then a later
`dnf upgrade` against NVIDIA's stand-in repository, which carries a newer release of the
branch, moves nothing, and does move it with the lock plugin off; a repomd.xml changed on
the mirror is refused; a symlink in the bundle's rpm tree pointing out is not served.

What cannot run here: a RHEL host (no RHEL VM on this machine; docs/deploys.md).
Needs root (installroot, nginx as nobody), dnf with dnf-plugins-core, nginx, setpriv.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gpuprov.deploys.mirror_server import BundlePaths, nginx_conf

from gpuprov.inventory.model import MirrorRef
from gpuprov.parsers.system import parse_versionlock_list
from gpuprov.paths import MIRROR_REPO, MIRROR_RPM_KEY, MIRROR_RPM_UPSTREAM_KEYS

from .test_build_rhel import DRIVER, NEWER, full, site  # noqa: F401 - module fixtures

sys.path.insert(0, str(Path(__file__).parents[2] / "deploys"))
from hoststate import host_state_output  # noqa: E402
from plan_harness import gpu_host, plan  # noqa: E402

needed = [t for t in ("nginx", "setpriv") if shutil.which(t) is None]
if needed or os.geteuid() != 0:
    pytest.skip(f"needs root and {', '.join(needed) or 'nginx'}", allow_module_level=True)
if not Path("/usr/lib/python3/dist-packages/dnf-plugins/versionlock.py").exists():
    pytest.skip("dnf-plugins-core not installed (make system-deps)", allow_module_level=True)

PORT_HOST = "127.0.0.1"
BUNDLE_ID = "f" * 64
RPM_OS = "rhel9"
WRITE_RE = re.compile(
    r"printf %s (?P<b64>[A-Za-z0-9+/=]+) \| base64 -d > (?P<path>\S+)\.gpuprov-new"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((PORT_HOST, 0))
        return s.getsockname()[1]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture(scope="module")
def mirror(full):  # noqa: F811 - fixtures
    """The bundle's rpm/ in a mirror-host layout, served by nginx with the rendered
    configuration as nobody (a world-readable copy: pytest's own directories are 0700)."""
    top = Path(tempfile.mkdtemp(prefix="gpuprov-rhel-mirror-"))
    try:
        top.chmod(0o755)
        bundle = BundlePaths(BUNDLE_ID, root=str(top / "srv"))
        shutil.copytree(full["out"] / "rpm", Path(bundle.dir) / "rpm")
        (Path(bundle.apt) / "debian12").mkdir(parents=True)
        (top / "secret").write_text("outside the bundle\n")
        for d in [top / "srv", *Path(top / "srv").rglob("*")]:
            d.chmod(0o755 if d.is_dir() else 0o644)
        runtime = top / "run"
        runtime.mkdir()
        os.chown(runtime, 65534, 65534)
        port = free_port()
        text = nginx_conf(MirrorRef(host="mirror01", apt_port=port), bundle, PORT_HOST)
        text = text.replace("/run/gpuprov-apt", str(runtime)).replace(
            "access_log syslog:server=unix:/dev/log,nohostname,tag=gpuprov_apt combined",
            "access_log off",
        )
        conf = top / "nginx.conf"
        conf.write_text(text)
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        proc = subprocess.Popen([*nobody, "nginx", "-e", "stderr", "-c", str(conf)],
                                stderr=subprocess.PIPE)  # fmt: skip
        base = f"http://{PORT_HOST}:{port}"
        deadline = time.monotonic() + 30
        while status(f"{base}/rpm/{RPM_OS}/repodata/repomd.xml") != 200:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "nginx exited"
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.2)
        try:
            yield {"top": top, "bundle": bundle, "base": base}
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
    finally:
        shutil.rmtree(top)


def client_files(built_site: dict, base: str, rpm_keys: Path) -> dict[str, bytes]:
    """What the mirror client deploy writes on a RHEL host for this mirror: path -> bytes,
    decoded from the commands it plans (the settings the inventory's mirror choice makes
    for an rhel9 host, at this nginx's port)."""
    settings = {
        "rpm_url": f"{base}/rpm/{RPM_OS}/",
        "keyring": str(built_site["keyring"]),
        "rpm_keys": str(rpm_keys),
    }
    ops = plan(gpu_host(), host_state_output("rhel9"), gpuprov_mirror_client=settings)
    op = next(o for o in ops if "| dnf repository: the site mirror" in o.name)
    files = {m["path"]: base64.b64decode(m["b64"]) for c in op.commands
             if (m := WRITE_RE.search(c))}  # fmt: skip
    assert set(files) == {MIRROR_REPO, MIRROR_RPM_KEY, MIRROR_RPM_UPSTREAM_KEYS}
    assert op.commands[-1] == "dnf -y -q makecache --repo=gpuprov-mirror"
    return files


def driver_commands() -> list[str]:
    """The driver deploy's dnf/rpm commands for a fresh RHEL 9 HGX H100 (NVSwitch)."""
    ops = plan(gpu_host(), host_state_output("rhel9"))
    wanted = [o for o in ops if "| NVIDIA driver 5" in o.name or "| Lock the driver" in o.name]
    assert len(wanted) == 2, [o.name for o in ops]
    return [c for o in wanted for c in o.commands]


class FarHost:
    """An installroot standing in for the RHEL host: /etc/yum.repos.d and /etc/pki/rpm-gpg
    of the host are directories of the test (the only change to the deploy's files is
    where gpgkey= points), and `dnf`/`rpm` on PATH are wrappers adding the installroot."""

    def __init__(self, work: Path, files: dict[str, bytes]):
        self.work = work
        self.root = work / "installroot"
        self.repos = work / "yum.repos.d"
        self.keys = work / "rpm-gpg"
        self.bin = work / "bin"
        for d in (self.root / "etc", self.repos, self.keys, self.bin, work / "plugins"):
            d.mkdir(parents=True, exist_ok=True)
        # What dnf reads the module platform from on a RHEL 9 host.
        (self.root / "etc/os-release").write_text(
            'NAME="Red Hat Enterprise Linux"\nVERSION_ID="9.6"\nID="rhel"\n'
            'PLATFORM_ID="platform:el9"\n'
        )
        for path, data in files.items():
            if path.startswith("/etc/pki/rpm-gpg/"):
                (self.keys / Path(path).name).write_bytes(data)
        repo = (
            files[MIRROR_REPO].decode().replace("file:///etc/pki/rpm-gpg/", f"file://{self.keys}/")
        )
        (self.repos / Path(MIRROR_REPO).name).write_text(repo)
        (work / "dnf.conf").write_text("[main]\nplugins=1\ninstall_weak_deps=0\nbest=1\n")
        (work / "plugins/versionlock.conf").write_text(
            f"[main]\nenabled=1\nlocklist={work / 'versionlock.list'}\n"
        )
        (work / "versionlock.list").write_text("")
        self.dnf_args = [
            "-c", str(work / "dnf.conf"), f"--installroot={self.root}", "--releasever=9",
            "--forcearch=x86_64", f"--setopt=reposdir={self.repos}",
            f"--setopt=cachedir={work / 'cache'}", f"--setopt=pluginconfpath={work / 'plugins'}",
            "--disableplugin=*", "--enableplugin=versionlock",
        ]  # fmt: skip
        (self.bin / "dnf").write_text(
            "#!/bin/sh\nexec /usr/bin/dnf " + " ".join(f"'{a}'" for a in self.dnf_args) + ' "$@"\n'
        )
        (self.bin / "rpm").write_text(f"#!/bin/sh\nexec /usr/bin/rpm --root='{self.root}' \"$@\"\n")
        for tool in ("dnf", "rpm"):
            (self.bin / tool).chmod(0o755)

    def sh(self, command: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        """One deploy command, as the host's shell runs it."""
        env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}"}
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                              timeout=timeout, env=env)  # fmt: skip

    def dnf_without_lock(self, *args: str) -> subprocess.CompletedProcess[str]:
        """dnf as above with the versionlock plugin not loaded."""
        base = [a for a in self.dnf_args if a != "--enableplugin=versionlock"]
        return subprocess.run(["/usr/bin/dnf", *base, *args], capture_output=True, text=True,
                              timeout=300)  # fmt: skip

    def installed(self) -> set[str]:
        done = self.sh("rpm -qa --qf '%{NAME}-%{VERSION}-%{RELEASE}\\n'")
        assert done.returncode == 0, done.stderr
        return set(done.stdout.split())


def upstream_keys(built: dict, tmp_path: Path) -> Path:
    """The control node's copy of the verified bundle's upstream keys (rpm_keys)."""
    dest = tmp_path / "upstream.asc"
    shutil.copyfile(built["out"] / "rpm" / RPM_OS / "keys/upstream.asc", dest)
    return dest


def test_rhel_host_installs_and_holds_the_driver_from_the_mirror(full, site, mirror, tmp_path):  # noqa: F811 - fixtures
    files = client_files(site, mirror["base"], upstream_keys(full, tmp_path))
    host = FarHost(tmp_path / "far", files)
    # The client's own step: the mirror's metadata read and its signature checked.
    done = host.sh("dnf -y -q makecache --repo=gpuprov-mirror")
    assert done.returncode == 0, done.stdout + done.stderr
    for command in driver_commands():
        done = host.sh(command)
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    installed = host.installed()
    for name in ("nvidia-driver", "nvidia-driver-cuda", "kmod-nvidia-open-dkms",
                 "nvidia-persistenced"):  # fmt: skip
        assert f"{name}-{DRIVER}-1.el9" in installed, sorted(installed)
    assert f"nvidia-fabric-manager-{DRIVER}-1" in installed
    assert "python3-dnf-plugin-versionlock-4.3.0-20.el9" in installed
    # The lock as the plugin wrote it, read the way the HostState fact reads it: every
    # package of the release, fabric manager at the driver's version.
    locks = (host.work / "versionlock.list").read_text()
    assert parse_versionlock_list(locks) == {
        **{n: f"{DRIVER}-1.el9" for n in ("nvidia-driver", "nvidia-driver-libs",
           "nvidia-driver-cuda", "nvidia-driver-cuda-libs", "nvidia-kmod-common",
           "kmod-nvidia-open-dkms", "nvidia-persistenced")},
        "nvidia-fabric-manager": f"{DRIVER}-1",
    }, locks  # fmt: skip
    capture = os.environ.get("GPUPROV_CAPTURE_VERSIONLOCK")
    if capture:  # how tests/fixtures/dnf/versionlock.list was recorded
        Path(capture).write_text(locks)

    # NVIDIA's repository (the stand-in: every release of the branch) beside the mirror:
    # `dnf upgrade` leaves the locked release; with the plugin off it would move it.
    (host.repos / "cuda.repo").write_text(
        f"[cuda]\nname=cuda\nbaseurl={site['url']}/cuda\ngpgcheck=1\nrepo_gpgcheck=1\n"
        f"gpgkey=file://{host.keys / 'RPM-GPG-KEY-gpuprov-mirror-upstream'}\n"
    )
    free = host.dnf_without_lock("-y", "upgrade", "--assumeno")  # -y: import the keys
    assert f"{NEWER}-1.el9" in free.stdout, free.stdout + free.stderr  # the lock is what holds
    done = host.sh("dnf -y upgrade")
    assert done.returncode == 0, done.stdout + done.stderr
    after = host.installed()
    assert not [p for p in after if NEWER in p], sorted(after)
    assert f"nvidia-driver-{DRIVER}-1.el9" in after and f"nvidia-fabric-manager-{DRIVER}-1" in after


def test_a_tampered_repomd_on_the_mirror_is_refused(full, site, mirror, tmp_path):  # noqa: F811 - fixtures
    files = client_files(site, mirror["base"], upstream_keys(full, tmp_path))
    repomd = Path(mirror["bundle"].dir) / "rpm" / RPM_OS / "repodata/repomd.xml"
    good = repomd.read_bytes()
    try:
        repomd.write_bytes(good.replace(b"<revision>", b"<revision>1"))
        host = FarHost(tmp_path / "far", files)
        done = host.sh("dnf -y -q makecache --repo=gpuprov-mirror")
        assert done.returncode != 0
        assert "repomd.xml GPG signature verification error" in done.stdout + done.stderr
    finally:
        repomd.write_bytes(good)


def test_a_symlink_in_the_rpm_tree_pointing_out_is_not_served(mirror):
    repo = Path(mirror["bundle"].dir) / "rpm" / RPM_OS
    (repo / "repodata/escape.xml").symlink_to(mirror["top"] / "secret")
    (repo / "Packages/escape.rpm").symlink_to(mirror["top"] / "secret")
    try:
        base = f"{mirror['base']}/rpm/{RPM_OS}"
        assert status(f"{base}/repodata/repomd.xml") == 200
        assert status(f"{base}/repodata/escape.xml") in (403, 404)
        assert status(f"{base}/Packages/escape.rpm") in (403, 404)
        assert status(f"{base}/Packages/") in (403, 404)  # no listing
    finally:
        (repo / "repodata/escape.xml").unlink()
        (repo / "Packages/escape.rpm").unlink()
