"""Issue 13, item 22 (apt part) on a real Debian host: the light host's own apt (its
stock configuration) refuses a Release past its Valid-Until, and accepts the repository
once `publish` has re-signed it: the renewal path of every bundle."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gpuprov.aptrepo import deb822_source, publish_repo

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(1, names=["aptexp01"]) as lab:
        yield lab


def test_host_apt_refuses_an_expired_release_until_published_again(
    lab, tmp_path, debs, key, keyring
):
    host = lab.hosts[0]
    served = tmp_path / "served"
    repo = served / "repo"
    now = datetime.now(UTC).replace(microsecond=0)
    publish_repo(debs, repo, suite="stable", key=key,
                 date=now - timedelta(days=10), valid_for=timedelta(days=1))  # fmt: skip
    url = lab.serve_http(served) + "repo"
    root = os.fspath(host.root_dir)
    os.makedirs(f"{root}/etc/apt/keyrings", exist_ok=True)
    shutil.copyfile(keyring, f"{root}/etc/apt/keyrings/gpuprov-test.gpg")
    with open(f"{root}/etc/apt/sources.list.d/gpuprov-test.sources", "w") as fh:
        fh.write(deb822_source(url, "stable", ["main"], "/etc/apt/keyrings/gpuprov-test.gpg"))

    update = lab.exec(host.name, "apt-get update 2>&1", check=False)
    assert update.returncode != 0, update.stdout
    assert "is expired" in update.stdout, update.stdout

    publish_repo(debs, repo, suite="stable", key=key)  # renewal: re-signed, fresh Valid-Until
    update = lab.exec(host.name, "apt-get update 2>&1", check=False)
    assert update.returncode == 0, update.stdout
    assert "is expired" not in update.stdout
    listed = lab.exec(host.name, "apt-cache policy alpha")
    assert "1.0-1" in listed.stdout
