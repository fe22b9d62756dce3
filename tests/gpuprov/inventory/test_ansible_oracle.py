"""Ansible itself as the oracle: `ansible-inventory -i FILE --list` on every inventory of
the corpus (INI and YAML: DeepOps' layout, ranges, children of children, vars at every
level), compared host by host with what gpuprov loaded: the same hosts, each in one of
its Ansible groups, and every variable Ansible resolves for it either in the gpuprov
field it maps to, in `Host.vars` with the same value, or named by a warning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpuprov.inventory import deepops
from gpuprov.inventory.ansible import SECRETS
from gpuprov.inventory.layers import resolve_path
from gpuprov.inventory.loader import load_inventory
from gpuprov.inventory.model import Cluster, Host

HERE = Path(__file__).parent
CORPUS = sorted(
    [p for p in (HERE / "ansible_corpus").rglob("*") if p.is_file()] + [HERE / "ansible_hallc.yaml"]
)
ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")


def ansible_list(path: Path, tmp: Path) -> dict[str, Any]:
    """What Ansible makes of `path`: `ansible-inventory --list`, only the plugin for the
    file's format enabled, failing (not warning) when it cannot parse."""
    if not ANSIBLE_INVENTORY.exists():
        pytest.fail("ansible-inventory missing: install the test extra (pip install -e '.[test]')")
    fmt = "yaml" if path.suffix in (".yaml", ".yml") else "ini"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "ANSIBLE_INVENTORY_ENABLED": fmt,
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "LC_ALL": "C.UTF-8",
    }
    out = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def direct_groups(listing: dict[str, Any], host: str) -> list[str]:
    return [g for g, v in listing.items() if g != "_meta" and host in v.get("hosts", [])]


def model_value(cluster: Cluster, h: Host, key: str) -> Any:
    """The value gpuprov holds for Ansible variable `key` of host `h`."""
    s = h.stack or cluster.stack  # non-gpu hosts: the cluster-wide stack (all.vars)
    return {
        "ansible_host": lambda: h.address,
        "ansible_port": lambda: h.ssh.port,
        "ansible_user": lambda: h.ssh.user,
        "ansible_become": lambda: h.ssh.sudo,
        "ansible_ssh_private_key_file": lambda: h.ssh.key,
        "gpuprov_known_hosts": lambda: h.ssh.known_hosts,
        "gpuprov_role": lambda: h.role,
        "gpuprov_profile": lambda: h.profile,
        "gpuprov_rack": lambda: h.rack,
        "gpuprov_domains": lambda: {k: v for k, v in h.domains.items() if k != "rack"},
        "gpuprov_driver_branch": lambda: s.driver.branch,
        "gpuprov_driver_version": lambda: s.driver.version,
        "gpuprov_driver_modules": lambda: s.driver.modules,
        "gpuprov_cuda": lambda: list(s.cuda),
        "gpuprov_cuda_default": lambda: s.cuda_default,
        "gpuprov_container_runtime": lambda: s.container_runtime,
        "gpuprov_dcgm": lambda: s.dcgm,
        "gpuprov_os": lambda: s.os,
        "gpuprov_cluster_name": lambda: cluster.name,
        "gpuprov_mirror": lambda: cluster.mirror.host,
    }[key]()


def expected(path: Path, key: str, value: Any) -> Any:
    """Ansible's value as the gpuprov field holds it."""
    if key in ("ansible_port",):
        return int(value)
    if key in ("gpuprov_driver_branch", "gpuprov_driver_version", "gpuprov_cuda_default"):
        return str(value)
    if key == "gpuprov_cuda":
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if key in ("ansible_ssh_private_key_file", "gpuprov_known_hosts"):
        return resolve_path(value, path.absolute().parent)
    if key == "gpuprov_mirror":
        return value if isinstance(value, str) else value["host"]
    if key in deepops.BOOLEAN_VARS:
        return deepops.boolean(value)
    return value


def warned(cluster: Cluster, key: str) -> bool:
    return any(f".{key}:" in w.message for w in cluster.warnings)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.relative_to(HERE).as_posix())
def test_gpuprov_loads_what_ansible_reads(path: Path, tmp_path: Path) -> None:
    listing = ansible_list(path, tmp_path)
    hostvars: dict[str, dict[str, Any]] = listing["_meta"]["hostvars"]
    cluster = load_inventory(path)
    ansible_hosts = {h for g, v in listing.items() if g != "_meta" for h in v.get("hosts", [])}
    assert set(cluster.hosts) == ansible_hosts
    checked = 0
    for name, h in cluster.hosts.items():
        groups = [g for g in direct_groups(listing, name) if g != "all"]
        assert h.group in groups or (h.group == "ungrouped" and not groups), (name, groups)
        avars = hostvars.get(name, {})
        for key, value in avars.items():
            assert key not in SECRETS
            tr = deepops.translate(key, value)
            pairs = tr.vars if tr is not None else [(key, value)]
            if tr is not None and not tr.vars:
                assert warned(cluster, key), f"{name}: {key} dropped without a warning"
                continue
            for gkey, gvalue in pairs:
                if gkey in ("ansible_host", "ansible_port", "ansible_user", "ansible_become",
                            "ansible_ssh_private_key_file") or gkey.startswith("gpuprov_"):  # fmt: skip
                    got = model_value(cluster, h, gkey)
                    assert got == expected(path, gkey, gvalue), (name, key, got, gvalue)
                elif gkey.startswith("ansible_"):
                    assert warned(cluster, gkey), f"{name}: {gkey} ignored without a warning"
                    assert gkey not in h.vars
                elif gkey in h.vars:
                    assert h.vars[gkey] == gvalue, (name, gkey, h.vars[gkey], gvalue)
                else:  # only all.vars may drop a free variable, and it says so
                    assert warned(cluster, gkey), f"{name}: {gkey} lost without a warning"
                checked += 1
        # nothing in gpuprov's vars that Ansible does not have
        assert set(h.vars) <= set(avars), (name, set(h.vars) - set(avars))
        # ansible_port absent -> 22; no ansible_host -> the name (as ssh would resolve it)
        if "ansible_host" not in avars:
            assert h.address == name
    assert checked > 0
    # --limit GROUP selects what Ansible's -l GROUP does, for every Ansible group
    for group in listing:
        if group not in ("_meta", "all"):
            want = transitive_hosts(listing, group)
            assert {h.name for h in cluster.select([group])} == want, group


def transitive_hosts(listing: dict[str, Any], group: str) -> set[str]:
    entry = listing.get(group, {})
    out = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        out |= transitive_hosts(listing, child)
    return out


def test_corpus_covers_the_issue() -> None:
    """The corpus holds what it claims: INI and YAML, DeepOps' layout, every range form,
    three levels of children, vars at every level (all, group, parent, host)."""
    text = {p.name: p.read_text() for p in CORPUS}
    assert any(p.suffix == ".yaml" for p in CORPUS) and any(p.suffix != ".yaml" for p in CORPUS)
    assert (
        "[k8s-cluster:children]" in text["inventory"]
        and "nvidia_driver_branch" in text["inventory"]
    )
    joined = "\n".join(text.values())
    for form in ("[01:16]", "[a:c]", "[1:9:2]", "r[1:2]n[01:02]", ":2222", "a1n[01:03]"):
        assert form in joined
    assert "[row-a:children]" in text["nested.ini"] and "[all:vars]" in text["nested.ini"]


@pytest.mark.skipif(shutil.which("true") is None, reason="no coreutils")
def test_ansible_rejects_what_gpuprov_rejects(tmp_path: Path) -> None:
    """A broken range: both refuse it (Ansible with an exception, gpuprov located)."""
    from gpuprov.errors import InputError

    bad = tmp_path / "hosts.ini"
    bad.write_text("[gpu]\ngpu[01:5]\n")
    env = {**os.environ, "HOME": str(tmp_path), "ANSIBLE_INVENTORY_ENABLED": "ini",
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}  # fmt: skip
    out = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(bad), "--list"], capture_output=True,
                         text=True, timeout=120, env=env, cwd=tmp_path)  # fmt: skip
    assert out.returncode != 0
    with pytest.raises(InputError) as info:
        load_inventory(bad)
    assert str(info.value.problems[0]).startswith(f"{bad}:2:1: error: 'gpu[01:5]': ")
