"""inventories/prod.yaml, the site template the README and docs use: it checks clean
(exit 0, no error, no warning) and the README's day-to-day commands name files that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from gpuprov.inventory.loader import load_inventory

REPO = Path(__file__).resolve().parents[3]
PROD = REPO / "inventories" / "prod.yaml"


def test_prod_template_checks_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from gpuprov.cli import main; main()",
         "inventory", "check", "inventories/prod.yaml"],
        capture_output=True, text=True, cwd=REPO, timeout=120, env={"NO_COLOR": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("inventories/prod.yaml: ok: cluster prod, 35 hosts (33 gpu)")
    assert ": error:" not in proc.stderr and ": warning:" not in proc.stderr, proc.stderr


def test_prod_template_uses_a_range_and_is_commented_in_order() -> None:
    cluster = load_inventory(PROD)
    assert [cluster.hosts[n].rack for n in ("gpu001", "gpu016", "gpu017", "gpu032")] == [
        "b01", "b01", "b02", "b02"]  # fmt: skip
    assert cluster.hosts["gpu032"].address == "10.20.1.42"
    text = PROD.read_text()
    steps = [text.index(f"  # {n}. ") for n in range(1, 7)]  # numbered sections, each present
    assert all(s > 0 for s in steps)


def test_readme_day_to_day_block_uses_files_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("Day to day", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    named = set(re.findall(r"inventories/[\w.-]+\.yaml", block))
    assert "inventories/prod.yaml" in named
    for name in named:
        assert (REPO / name).is_file(), name
