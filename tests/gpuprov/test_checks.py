from __future__ import annotations

import textwrap

from gpuprov.checks import resolve_modules, static_checks
from gpuprov.inventory.loader import load_inventory
from gpuprov.tables import get_profile

BASE = """\
cluster:
  name: t
  stack:
    os: OS
    driver: {branch: "BRANCH", version: "VERSION", modules: MODULES}
    cuda: CUDA
    container_runtime: RUNTIME
  rollout: {gates: GATES}
groups:
  gpu:
    profile: PROFILE
    hosts:
      g1: {address: 10.0.0.1, rack: r1}
"""


def check(tmp_path, **kw):
    values = dict(OS="debian12", BRANCH="580", VERSION="580.95.05", MODULES="auto", CUDA='["12.8", "13.0"]',
                  RUNTIME="containerd", GATES="[nvidia-smi]", PROFILE="hgx-h100-8")  # fmt: skip
    values.update(kw)
    text = BASE
    for k, v in values.items():
        text = text.replace(k, v)
    p = tmp_path / "inv.yaml"
    p.write_text(textwrap.dedent(text))
    found = static_checks(load_inventory(p))
    return [f for f in found if f.severity == "error"], found


def test_example_inventories_are_clean():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "inventories"
    for name in ("example.yaml", "lab.yaml"):
        found = static_checks(load_inventory(root / name))
        assert [f for f in found if f.severity == "error"] == []
        assert any(
            f.severity == "note" and "nvidia-fabricmanager=580.95.05-1" in f.message for f in found
        )


def test_cuda_13_on_driver_570_names_the_minimum(tmp_path):
    errors, _ = check(tmp_path, BRANCH="570", VERSION="570.133.20", CUDA='["13.0"]')
    assert len(errors) == 1
    assert "CUDA 13.0 needs driver 580.65.06 or later" in errors[0].message
    assert (errors[0].location.line, errors[0].location.col) == (6, 11)


def test_minor_version_compat_is_a_warning(tmp_path):
    errors, found = check(tmp_path, BRANCH="570", VERSION="570.124.06", CUDA='["12.9"]')
    assert errors == []
    assert any(
        f.severity == "warning" and "minor-version compatibility" in f.message for f in found
    )


def test_unknown_cuda_version(tmp_path):
    errors, _ = check(tmp_path, CUDA='["12.7"]')
    assert "unknown CUDA version '12.7'" in errors[0].message


def test_b200_proprietary_is_an_error_auto_resolves_open(tmp_path):
    errors, _ = check(tmp_path, PROFILE="hgx-b200-8", MODULES="proprietary")
    assert any("needs the open kernel modules" in e.message for e in errors)
    assert errors[0].location.line == 5
    errors, _ = check(tmp_path, PROFILE="hgx-b200-8", MODULES="auto")
    assert errors == []
    c = load_inventory(tmp_path / "inv.yaml")
    assert resolve_modules(c.hosts["g1"].stack, get_profile("hgx-b200-8")) == "open"


def test_driver_branch_below_profile_minimum(tmp_path):
    errors, _ = check(
        tmp_path, PROFILE="hgx-b200-8", BRANCH="535", VERSION="535.183.01", CUDA='["12.2"]'
    )
    assert any(
        "branch 535 is below the minimum for hgx-b200-8 (branch 570" in e.message for e in errors
    )
    errors, _ = check(
        tmp_path, PROFILE="hgx-b200-8", BRANCH="570", VERSION="570.86.10", CUDA='["12.8"]'
    )
    assert any(
        "older than the first that supports hgx-b200-8 (570.133.20)" in e.message for e in errors
    )
    errors, _ = check(
        tmp_path, PROFILE="hgx-b200-8", BRANCH="570", VERSION="570.133.20", CUDA='["12.8"]'
    )
    assert errors == []


def test_fabric_manager_note_for_nvswitch_only(tmp_path):
    _, found = check(tmp_path, BRANCH="570", VERSION="570.133.20", CUDA='["12.8"]')
    notes = [f.message for f in found if f.severity == "note"]
    assert any("nvidia-fabricmanager-570=570.133.20-1" in n for n in notes)
    _, found = check(tmp_path, PROFILE="h100-pcie")
    assert not [f for f in found if f.severity == "note"]


def test_package_missing_for_os_branch(tmp_path):
    errors, _ = check(
        tmp_path, PROFILE="h100-pcie", BRANCH="545", VERSION="545.23.06", CUDA='["12.3"]'
    )
    assert any("branch 545 has no packages for debian12" in e.message for e in errors)
    assert errors[0].location.line == 5


def test_container_gate_needs_runtime(tmp_path):
    errors, _ = check(tmp_path, RUNTIME="none", GATES="[nvidia-smi, container]")
    assert len(errors) == 1 and "gate `container`" in errors[0].message
    assert errors[0].location.line == 8
    errors, _ = check(tmp_path, RUNTIME="none", GATES="[nvidia-smi]")
    assert errors == []


def test_resolve_modules_explicit_wins(tmp_path):
    check(tmp_path, MODULES="proprietary")
    c = load_inventory(tmp_path / "inv.yaml")
    assert resolve_modules(c.hosts["g1"].stack, get_profile("hgx-h100-8")) == "proprietary"


def test_preflight_ignore_codes_are_checked(tmp_path):
    ignore = "      g1: {address: 10.0.0.1, rack: r1, vars: {gpuprov_preflight_ignore: IGNORE}}"
    base = BASE.replace("      g1: {address: 10.0.0.1, rack: r1}", ignore)

    def errors(value: str) -> list[str]:
        p = tmp_path / "inv.yaml"
        text = base.replace("IGNORE", value)
        for k, v in dict(OS="debian12", BRANCH="580", VERSION="580.95.05", MODULES="auto",
                         CUDA='["12.8"]', RUNTIME="containerd", GATES="[nvidia-smi]",
                         PROFILE="hgx-h100-8").items():  # fmt: skip
            text = text.replace(k, v)
        p.write_text(text)
        return [str(f) for f in static_checks(load_inventory(p)) if f.severity == "error"]

    assert errors("[stack_os, gpus, disk, headers, os, secure_boot]") == []
    [error] = errors("[gpus, header]")
    assert error.startswith(f"{tmp_path / 'inv.yaml'}:13:")
    assert "g1: gpuprov_preflight_ignore: unknown check 'header' (known: os, stack_os" in error
    [error] = errors("headers")
    assert "expected a list of check codes" in error and "'headers'" in error
