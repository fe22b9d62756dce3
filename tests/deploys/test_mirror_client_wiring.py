"""GPU hosts wired to their nearest mirror: the choice (from a real inventory of two mirror
hosts in two racks), and what the mirror client deploy writes for it, planned against
fact output (pyinfra's @fake connector): deb822 with Signed-By the bundle keyring and
never trusted=yes, the registry mirror, HF_ENDPOINT for shells, PAM sessions and every
systemd service; converged, nothing changes."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import pytest
from pyinfra.api import deploy

sys.path.insert(0, str(Path(__file__).parent))

from gpuprov.deploys.mirror_client import mirror_client  # noqa: E402
from plan_harness import plan  # noqa: E402
from test_gpu_stack_plan import converged_digests, converged_state, find  # noqa: E402

from gpuprov.inventory.loader import load_inventory  # noqa: E402
from gpuprov.inventory.mirrors import MIRROR_CHOICE_KEY, mirror_choices, nearest_mirror  # noqa: E402
from gpuprov.operations.envfile import merge_environment  # noqa: E402
from gpuprov.operations.files import sha256  # noqa: E402

INVENTORY = """\
cluster:
  name: two-racks
  stack:
    os: debian12
    driver: {branch: "580", version: "580.95.05"}
    container_runtime: containerd
  mirror: {host: mirror01, keyring: bundle.gpg%s}
groups:
  gpu:
    profile: hgx-h100-8
    hosts:
      gpu001: {address: 10.0.1.1, rack: r01}
      gpu002: {address: 10.0.2.1, rack: r02}
      gpu003: {address: 10.0.3.1, rack: r03, domains: {row: B}}
      gpu004: {address: 10.0.9.1, rack: r09}
  mirrors:
    role: mirror
    hosts:
      mirror01: {address: 10.0.1.5, rack: r01, domains: {row: A}}
      mirror02: {address: 10.0.2.5, rack: r02, domains: {row: B}}
"""


@pytest.fixture
def cluster(tmp_path: Path):
    (tmp_path / "bundle.gpg").write_bytes(b"\x99\x01bundle-keyring")
    path = tmp_path / "site.yaml"
    path.write_text(INVENTORY % "")
    return load_inventory(path)


def test_each_gpu_host_uses_the_mirror_of_its_rack_else_row_else_the_first(cluster) -> None:
    chosen = {
        n: (c.mirror.name, c.reason)
        for n, c in mirror_choices(cluster, list(cluster.hosts.values())).items()
    }
    assert chosen == {
        "gpu001": ("mirror01", "same rack r01"),
        "gpu002": ("mirror02", "same rack r02"),
        "gpu003": ("mirror02", "same row B"),
        "gpu004": ("mirror01", "no shared failure domain: the first mirror"),
    }


def test_the_first_mirror_is_the_one_cluster_mirror_names(tmp_path: Path) -> None:
    (tmp_path / "bundle.gpg").write_bytes(b"k")
    path = tmp_path / "site.yaml"
    path.write_text((INVENTORY % "").replace("host: mirror01", "host: mirror02"))
    cluster = load_inventory(path)
    assert nearest_mirror(cluster, cluster.hosts["gpu004"]).mirror.name == "mirror02"
    assert nearest_mirror(cluster, cluster.hosts["gpu001"]).mirror.name == "mirror01"


def test_nearest_order_comes_from_the_inventory(tmp_path: Path) -> None:
    (tmp_path / "bundle.gpg").write_bytes(b"k")
    path = tmp_path / "site.yaml"
    path.write_text(INVENTORY % ", nearest: [row]")
    cluster = load_inventory(path)
    # rack no longer counts: gpu001 (row unset) falls back to the first mirror
    assert nearest_mirror(cluster, cluster.hosts["gpu002"]).mirror.name == "mirror01"
    assert nearest_mirror(cluster, cluster.hosts["gpu003"]).reason == "same row B"


def test_bad_nearest_key_and_missing_keyring_name_their_line(tmp_path: Path) -> None:
    from gpuprov.errors import InputError

    path = tmp_path / "site.yaml"
    path.write_text(INVENTORY % ', nearest: ["rack; rm"]')
    with pytest.raises(InputError) as err:
        load_inventory(path)
    text = str(err.value)
    assert f"{path}:7:" in text and "cluster.mirror.keyring: file not found" in text
    assert "cluster.mirror.nearest: expected failure-domain keys" in text


def written(ops, path: str) -> str:
    """The content a write_file_command puts at `path` (decoded from its base64)."""
    return written_bytes(ops, path).decode()


def written_bytes(ops, path: str) -> bytes:
    for op in ops:
        for c in op.commands:
            m = re.search(
                r"printf %s (\S+) \| base64 -d > " + re.escape(path) + r"\.gpuprov-new", c
            )
            if m:
                return base64.b64decode(m.group(1))
    raise AssertionError(f"nothing writes {path}")


def wiring_plan(cluster, name: str, extras: str = ""):
    me = cluster.hosts[name]
    return plan(
        me,
        converged_state(),
        extras,
        deploy=mirror_client_only,
        **{MIRROR_CHOICE_KEY: nearest_mirror(cluster, me)},
    )


@deploy("Mirror client only")
def mirror_client_only() -> None:
    from gpuprov.deploys.context import node_context

    mirror_client(node_context())


def test_gpu_host_wired_to_its_mirror(cluster) -> None:
    ops = wiring_plan(cluster, "gpu002")
    source = written(ops, "/etc/apt/sources.list.d/gpuprov-mirror.sources")
    assert source == (
        "Types: deb\nURIs: http://10.0.2.5:8080/debian12\nSuites: gpuprov\nComponents: main\n"
        "Signed-By: /etc/apt/keyrings/gpuprov-mirror.gpg\n"
    )
    assert written_bytes(ops, "/etc/apt/keyrings/gpuprov-mirror.gpg") == b"\x99\x01bundle-keyring"
    assert "(mirror02)" in find(ops, "apt source").name
    hosts_toml = written(ops, "/etc/containerd/certs.d/nvcr.io/hosts.toml")
    assert '[host."http://10.0.2.5:5000"]' in hosts_toml
    assert 'capabilities = ["pull", "resolve"]' in hosts_toml
    hf = "http://10.0.2.5:8090"
    assert f"export HF_ENDPOINT={hf}\nexport HF_HUB_DISABLE_XET=1" in written(
        ops, "/etc/profile.d/gpuprov-hf.sh"
    )
    assert written(ops, "/etc/environment") == f"HF_ENDPOINT={hf}\nHF_HUB_DISABLE_XET=1\n"
    dropin = written(ops, "/etc/systemd/system.conf.d/gpuprov-mirror.conf")
    assert f'[Manager]\nDefaultEnvironment="HF_ENDPOINT={hf}" "HF_HUB_DISABLE_XET=1"\n' in dropin
    reload = find(ops, "daemon-reload")
    assert reload.commands == ["if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi"]


def test_no_rendered_source_ever_says_trusted_yes(cluster) -> None:
    sources = []
    for name in ("gpu001", "gpu002", "gpu003", "gpu004"):
        sources.append(
            written(wiring_plan(cluster, name), "/etc/apt/sources.list.d/gpuprov-mirror.sources")
        )
    assert len(sources) == 4
    for text in sources:
        assert "trusted" not in text.lower() and "Signed-By: /etc/apt/keyrings/" in text


def test_converged_host_changes_nothing(cluster) -> None:
    first = wiring_plan(cluster, "gpu001")
    paths = [
        "/etc/apt/sources.list.d/gpuprov-mirror.sources",
        "/etc/apt/keyrings/gpuprov-mirror.gpg",
        "/etc/profile.d/gpuprov-hf.sh",
        "/etc/environment.d/90-gpuprov-hf.conf",
        "/etc/systemd/system.conf.d/gpuprov-mirror.conf",
        "/etc/containerd/conf.d/90-gpuprov-registry.toml",
        *(f"/etc/containerd/certs.d/{r}/hosts.toml" for r in ("docker.io", "nvcr.io", "ghcr.io")),
    ]
    digests = converged_digests() | {p: sha256(written_bytes(first, p)) for p in paths}
    from plan_harness import extras_output

    extras = extras_output(
        digests=digests, cdi_driver="580.95.05", containerd=True,
        environment="LANG=C.UTF-8\n" + written(first, "/etc/environment"),
    )  # fmt: skip
    again = wiring_plan(cluster, "gpu001", extras)
    assert [o.name for o in again if o.commands] == []


def test_without_the_bundle_keyring_apt_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text((INVENTORY % "").replace(", keyring: bundle.gpg", ""))
    cluster = load_inventory(path)
    ops = wiring_plan(cluster, "gpu001")
    step = find(ops, "apt source")
    assert step.commands == [] and "cluster.mirror.keyring" in step.noop
    assert written(ops, "/etc/environment")  # the rest is still wired


def test_a_hand_written_mirror_client_var_wins(cluster, tmp_path: Path) -> None:
    keyring = tmp_path / "lab.gpg"
    keyring.write_bytes(b"lab")
    me = cluster.hosts["gpu001"]
    ops = plan(
        me, converged_state(), "", deploy=mirror_client_only,
        gpuprov_mirror_client={"apt_url": "http://10.9.9.1:8080", "suite": "lab", "keyring": str(keyring)},
        **{MIRROR_CHOICE_KEY: nearest_mirror(cluster, me) },
    )  # fmt: skip
    assert "URIs: http://10.9.9.1:8080\nSuites: lab\n" in written(
        ops, "/etc/apt/sources.list.d/gpuprov-mirror.sources"
    )


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (None, "HF_ENDPOINT=http://m:8090\nHF_HUB_DISABLE_XET=1\n"),
        ('PATH="/usr/bin"\n', 'PATH="/usr/bin"\nHF_ENDPOINT=http://m:8090\nHF_HUB_DISABLE_XET=1\n'),
        ("HF_ENDPOINT=http://old:1\nLANG=C\n", "LANG=C\nHF_ENDPOINT=http://m:8090\nHF_HUB_DISABLE_XET=1\n"),
        ("LANG=C\nHF_ENDPOINT=http://m:8090\nHF_HUB_DISABLE_XET=1\n", None),
        ("HF_ENDPOINT=http://m:8090\nHF_HUB_DISABLE_XET=1\nexport HF_ENDPOINT=http://m:8090\n",
         "HF_ENDPOINT=http://m:8090\nHF_HUB_DISABLE_XET=1\n"),
    ],
)  # fmt: skip
def test_environment_merge_keeps_the_sites_lines(current, expected) -> None:
    values = {"HF_ENDPOINT": "http://m:8090", "HF_HUB_DISABLE_XET": "1"}
    assert merge_environment(current, values) == expected


def test_environment_refuses_what_pam_env_would_misread() -> None:
    with pytest.raises(ValueError, match="refusing"):
        merge_environment(None, {"HF_ENDPOINT": "http://m:8090\nLD_PRELOAD=/x"})


def test_plan_shows_each_hosts_mirror_even_when_hosts_are_down(tmp_path: Path) -> None:
    """`gpuprov plan` names every GPU host's mirror from the inventory alone (port 1 on
    loopback refuses at once, so no host is reached)."""
    import subprocess

    (tmp_path / "bundle.gpg").write_bytes(b"k")
    (tmp_path / "known_hosts").touch()
    text = (INVENTORY % "").replace("  groups:", "groups:")
    text = text.replace(
        "    container_runtime: containerd\n",
        "    container_runtime: containerd\n  ssh: {port: 1, connect_timeout: 2}\n",
    )
    text = re.sub(
        r"address: 10\.0\.(\d)\.(\d)", lambda m: f"address: 127.0.{m.group(1)}.{m.group(2)}", text
    )
    (tmp_path / "site.yaml").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", "plan", str(tmp_path / "site.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # unreachable
    out = proc.stdout + proc.stderr
    assert "gpu002: mirror mirror02 (same rack r02)" in out
    assert "gpu003: mirror mirror02 (same row B)" in out
    assert "gpu004: mirror mirror01 (no shared failure domain: the first mirror)" in out


# ---- docker: the old site registry leaves daemon.json when the mirror changes -------------
USER_DAEMON = json.dumps({
    "log-driver": "local",
    "registry-mirrors": ["https://user.example"],
    "insecure-registries": ["user.example:5000"],
})  # fmt: skip


def docker_plan(tmp_path: Path, registry: str | None, daemon: str | None, record: str | None):
    """The GPU stack's plan for a converged docker host whose mirror client names
    `registry` (None: none), with daemon.json and gpuprov's record as the facts say."""
    from hoststate import host_state_output  # noqa: F401 - the harness's own import path
    from plan_harness import gpu_host
    from plan_harness import plan as plan_stack
    from test_gpu_stack_plan import ALL_RUNNING, CONVERGED_PACKAGES, RUNNING, converged_extras

    keyring = tmp_path / "mirror.gpg"
    keyring.write_bytes(b"\x99\x01binary-keyring")
    mirror = {"apt_url": "http://10.0.0.5/apt", "keyring": str(keyring)}
    if registry:
        mirror["registry"] = registry
    pkgs = {k: v for k, v in CONVERGED_PACKAGES.items() if k != "containerd"}
    pkgs["docker.io"] = "20.10.24+dfsg1-1+b3"
    state = converged_state(
        packages=pkgs, held=tuple(pkgs), services={**ALL_RUNNING, "docker": RUNNING}
    )
    extras = converged_extras(containerd=False, docker=True, docker_daemon=daemon,
                              docker_mirror=record)  # fmt: skip
    return plan_stack(gpu_host(runtime="docker"), state, extras, gpuprov_mirror_client=mirror)


def written_files(op) -> dict[str, str]:
    """path -> content of each write_file_command in the op's one shell command."""
    import shlex

    [command] = op.commands
    words = shlex.split(command)
    out = {}
    for i, word in enumerate(words):
        if word == "%s":
            target = words[words.index("mv", i) + 3]
            out[target] = base64.b64decode(words[i + 1]).decode()
    return out


def test_docker_mirror_change_takes_the_old_entries_out_keeping_the_users(tmp_path: Path) -> None:
    from test_gpu_stack_plan import find

    # First wiring: the site registry added, and recorded as gpuprov's.
    first = written_files(find(docker_plan(tmp_path, "10.0.1.5:5000", USER_DAEMON, None),
                               "docker: pull Docker Hub"))  # fmt: skip
    daemon = json.loads(first["/etc/docker/daemon.json"])
    assert daemon["registry-mirrors"] == ["https://user.example", "http://10.0.1.5:5000"]
    assert daemon["insecure-registries"] == ["user.example:5000", "10.0.1.5:5000"]
    record = first["/etc/gpuprov/docker-mirror.json"]
    assert json.loads(record) == {
        "registry-mirrors": ["http://10.0.1.5:5000"], "insecure-registries": ["10.0.1.5:5000"]
    }  # fmt: skip
    # The host's mirror moves (another mirror host): the old entries go, the user's stay.
    ops = docker_plan(tmp_path, "10.0.2.5:5000", first["/etc/docker/daemon.json"], record)
    moved = written_files(find(ops, "docker: pull Docker Hub"))
    daemon = json.loads(moved["/etc/docker/daemon.json"])
    assert daemon == {
        "log-driver": "local",
        "registry-mirrors": ["https://user.example", "http://10.0.2.5:5000"],
        "insecure-registries": ["user.example:5000", "10.0.2.5:5000"],
    }
    assert json.loads(moved["/etc/gpuprov/docker-mirror.json"]) == {
        "registry-mirrors": ["http://10.0.2.5:5000"], "insecure-registries": ["10.0.2.5:5000"]
    }  # fmt: skip
    assert find(ops, "docker running").commands == ["systemctl restart docker.service"]
    # Converged on the new mirror (daemon.json as the apply left it: the container step
    # merged features.cdi after the mirror step): nothing written, nothing restarted.
    final = written_files(find(ops, "docker: inject GPUs through CDI"))["/etc/docker/daemon.json"]
    assert json.loads(final)["features"] == {"cdi": True}
    again = docker_plan(tmp_path, "10.0.2.5:5000", final,
                        moved["/etc/gpuprov/docker-mirror.json"])  # fmt: skip
    assert find(again, "docker: pull Docker Hub").commands == []
    assert find(again, "docker running").commands == []
    # No registry any more: gpuprov's entries leave; a key left empty goes.
    ops = docker_plan(tmp_path, None, final, moved["/etc/gpuprov/docker-mirror.json"])
    gone = written_files(find(ops, "former site registry"))
    assert json.loads(gone["/etc/docker/daemon.json"]) == {
        **json.loads(USER_DAEMON), "features": {"cdi": True}
    }  # fmt: skip
    assert json.loads(gone["/etc/gpuprov/docker-mirror.json"]) == {}


def test_docker_entries_the_user_had_are_never_taken_out(tmp_path: Path) -> None:
    from test_gpu_stack_plan import find

    # The user listed the site registry by hand before gpuprov: nothing added, nothing recorded.
    user = json.dumps({"registry-mirrors": ["http://10.0.1.5:5000"],
                       "insecure-registries": ["10.0.1.5:5000"]})  # fmt: skip
    ops = docker_plan(tmp_path, "10.0.1.5:5000", user, None)
    assert find(ops, "docker: pull Docker Hub").commands == []
    # The mirror moves: the new one is added (and recorded), the user's entry stays.
    moved = written_files(find(docker_plan(tmp_path, "10.0.2.5:5000", user, None),
                               "docker: pull Docker Hub"))  # fmt: skip
    daemon = json.loads(moved["/etc/docker/daemon.json"])
    assert daemon["registry-mirrors"] == ["http://10.0.1.5:5000", "http://10.0.2.5:5000"]
    assert json.loads(moved["/etc/gpuprov/docker-mirror.json"])["registry-mirrors"] == [
        "http://10.0.2.5:5000"
    ]


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ("{oops", "line 1: not valid JSON"),
        ('["http://a:5000"]', "expected an object with keys registry-mirrors, insecure-registries"),
        (
            '{"registry-mirrors": ["http://a:5000; rm -rf /"]}',
            "must be a list of registry addresses",
        ),
        ('{"runtimes": []}', "expected an object with keys"),
    ],
)
def test_a_damaged_docker_mirror_record_refuses_the_host_naming_it(tmp_path, record, why) -> None:
    from gpuprov.engine.refusal import HostRefused

    with pytest.raises(HostRefused, match=r"/etc/gpuprov/docker-mirror.json .*" + re.escape(why)):
        docker_plan(tmp_path, "10.0.2.5:5000", USER_DAEMON, record)
