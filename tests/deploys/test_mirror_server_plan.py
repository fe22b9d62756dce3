"""The mirror host's deploy planned against its facts (pyinfra's fake connector answers the
one NodeFacts command with a `mirror` section in the format mirror_state.command() prints):
a converged mirror host plans nothing and costs one command; a bare one gets every step
in order (the packaged units masked before the packages are installed); a new bundle
restarts the services onto it; no bundle, a bundle without this host's OS or Python, is a
clear refusal before any change."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hoststate import host_state_output, section  # noqa: E402
from plan_harness import (  # noqa: E402
    changes,
    extras_output,
    mirror_host,
    node_facts_output,
    plan,
)

from gpuprov.engine.refusal import HostRefused  # noqa: E402
from gpuprov.facts.mirror_state import parse  # noqa: E402
from gpuprov.inventory.model import Host, MirrorRef, SSHSettings  # noqa: E402
from gpuprov.operations.files import sha256  # noqa: E402
from gpuprov.paths import MIRROR_MANAGED_PATHS, MIRROR_SERVING  # noqa: E402

BUNDLE = "b" * 64
NEW_BUNDLE = "c" * 64
WHEELS = "d" * 64
MIRROR = MirrorRef(host="mirror01", apt_port=8081, registry_port=5001, models_port=8091)


def mirror_section(
    bundle: str | None = BUNDLE,
    *,
    venv: str | None = WHEELS[:16],
    user: bool = True,
    packages: bool = True,
    units: str = "active enabled",
    packaged: str = "inactive masked",
    registries: tuple[str, ...] = (BUNDLE,),
    apt_os: tuple[str, ...] = ("debian12",),
    wheels: str | None = WHEELS,
) -> str:
    lines = [f"current bundles/{bundle}" if bundle else "current "]
    if bundle:
        lines.append("bundle ok")
        lines += [f"apt-os {o}" for o in apt_os]
    lines.append("python 3.11")
    if wheels:
        lines.append(f"wheels {wheels}")
        lines.append("pip pip-24.3.1-py3-none-any.whl")
    lines.append(f"venv venv-{venv}" if venv else "venv ")
    if user:
        lines.append("user yes")
    if packages:
        lines += [f"pkg {p} installed" for p in ("docker-registry", "nginx")]
    lines += [f"unit gpuprov-{u} {units}" for u in ("apt", "registry", "models")]
    lines += [f"unit {u} {packaged}" for u in ("nginx", "docker-registry")]
    lines += [f"registry {r}" for r in registries]
    return "\n".join(lines)


def converged_digests(bundle: str = BUNDLE) -> dict[str, str]:
    from gpuprov.deploys.mirror_server import (
        UNIT_DIR,
        BundlePaths,
        ModelsSecurity,
        apt_unit,
        models_unit,
        nginx_conf,
        own_source,
        registry_conf,
        registry_unit,
    )

    from gpuprov.paths import MIRROR_NGINX_CONF, MIRROR_OWN_SOURCE, MIRROR_REGISTRY_CONF

    b = BundlePaths(bundle)
    texts = {
        MIRROR_OWN_SOURCE: own_source(b, "debian12"),
        MIRROR_NGINX_CONF: nginx_conf(MIRROR, b, "10.0.0.5"),
        MIRROR_REGISTRY_CONF: registry_conf(MIRROR, b, "10.0.0.5", ModelsSecurity()),
        f"{UNIT_DIR}/gpuprov-apt.service": apt_unit(MIRROR),
        f"{UNIT_DIR}/gpuprov-registry.service": registry_unit(MIRROR),
        f"{UNIT_DIR}/gpuprov-models.service": models_unit(MIRROR, b.models, "10.0.0.5"),
        MIRROR_SERVING: bundle + "\n",
    }
    return {path: sha256(text) for path, text in texts.items()}


def plan_mirror(mirror: str, digests: dict[str, str] | None = None):
    from gpuprov.deploys.gpu_node import gpu_node
    from gpuprov.deploys.mirror_server import MIRROR_REF_KEY, mirror_server
    from gpuprov.deploys.preflight import identity_json

    me = mirror_host()
    facts = node_facts_output(
        host_state_output("debian12", headers=False),
        extras_output(digests or {}),
        f"644\n{sha256(identity_json(me, None))}",
    ) + section("mirror", mirror)

    def both():
        gpu_node()  # preflight: the same sequence `gpuprov apply` runs (deploys/playbook.py)
        mirror_server()

    return plan(
        me,
        "",
        deploy=both,
        fake_responses={"gpuprov HostState": facts.splitlines()},
        **{MIRROR_REF_KEY: MIRROR},
    )


def test_the_section_parses_what_it_prints():
    data = parse(mirror_section())
    assert data.current == BUNDLE and data.apt_os == ["debian12"] and data.python == "3.11"
    assert data.pip_wheel == "pip-24.3.1-py3-none-any.whl"
    assert data.wheels == WHEELS and data.venv == f"venv-{WHEELS[:16]}" and data.user
    assert data.units["nginx"] == ("inactive", "masked") and data.registries == [BUNDLE]


@pytest.mark.parametrize(
    "link", ["bundles/../../etc", "/etc", "bundles/" + "B" * 64, "bundles/" + "b" * 63, ""]
)
def test_current_must_name_an_imported_bundle(link):
    assert parse(f"current {link}\nbundle ok\n").current is None
    assert parse(f"current bundles/{BUNDLE}\n").current is None  # no manifest: no bundle


def test_converged_mirror_plans_nothing_in_one_round_trip(sent):
    ops = plan_mirror(mirror_section(), converged_digests())
    assert changes(ops) == [], [(o.name, o.commands) for o in changes(ops)]
    assert len(sent) == 1, sent
    assert "gpuprov HostState" in sent[0] and "gpuprov-registry" in sent[0]
    assert any("gpuprov-registry.service" in o.name for o in ops)


def test_bare_mirror_gets_every_step_in_order(sent):
    bare = mirror_section(
        venv=None, user=False, packages=False, units="inactive -", packaged="- -", registries=()
    )
    absent = {path: "-" for path in MIRROR_MANAGED_PATHS}  # how DeployExtras says "absent"
    ops = changes(plan_mirror(bare, absent))
    names = [o.name for o in ops]
    order = [
        "System user gpuprov-mirror",
        "apt source: bundle bbbbbbbbbbbb",
        "masked",
        "Packages from the bundle",
        "gpuprov from the bundle's wheels",
        "Registry storage of bundle",
        "nginx-apt.conf",
        "registry.yml",
        "gpuprov-apt.service",
        "gpuprov-registry.service",
        "gpuprov-models.service",
        "serving",
        "daemon-reload",
    ]
    at = [next(i for i, n in enumerate(names) if want in n) for want in order]
    assert at == sorted(at), names
    commands = {o.name: " ; ".join(o.commands) for o in ops}
    mask = next(c for n, c in commands.items() if "masked" in n)
    assert mask == "systemctl mask --now nginx.service docker-registry.service"
    install = next(c for n, c in commands.items() if "Packages" in n)
    assert "Dir::Etc::SourceParts=/nonexistent" in install and "nginx docker-registry" in install
    venv = next(c for n, c in commands.items() if "wheels" in n)
    assert "--no-index" in venv and "--require-hashes" in venv and "--without-pip" in venv
    assert f"/srv/gpuprov/bundles/{BUNDLE}/wheels/pip-24.3.1-py3-none-any.whl/pip install" in venv
    assert f"-r /srv/gpuprov/bundles/{BUNDLE}/wheels/requirements-3.11.txt" in venv
    starts = [c for n, c in commands.items() if n.endswith("enabled and running")]
    assert len(starts) == 3 and all("systemctl enable" in c and "start" in c for c in starts)
    assert len(sent) == 1, sent  # still one read: everything was in the NodeFacts answer


def test_a_new_bundle_restarts_the_services_onto_it(sent):
    ops = changes(plan_mirror(mirror_section(NEW_BUNDLE), converged_digests(BUNDLE)))
    names = [o.name for o in ops]
    assert any("Registry storage of bundle cccccccccccc" in n for n in names), names
    restarts = [o for o in ops if "restart" in " ".join(o.commands)]
    assert len(restarts) == 3, names
    assert not any("gpuprov from the bundle's wheels" in n for n in names)  # same wheels
    assert len(sent) == 1


def test_a_changed_config_restarts_only_its_service(sent):
    digests = converged_digests()
    digests["/etc/gpuprov/mirror/registry.yml"] = "0" * 64  # edited by hand
    ops = changes(plan_mirror(mirror_section(), digests))
    restarted = [o.name for o in ops if "restart" in " ".join(o.commands)]
    assert restarted == ["Mirror host | gpuprov-registry.service: enabled and running"] or (
        len(restarted) == 1 and "gpuprov-registry" in restarted[0]
    ), restarted


@pytest.mark.parametrize(
    ("mirror", "message"),
    [
        (mirror_section(None), "no bundle imported on the mirror host: /srv/gpuprov/current"),
        (mirror_section(apt_os=("ubuntu2404",)), "no apt repository for this host's OS debian12"),
        (mirror_section(wheels=None), "no wheels for this host's Python 3.11"),
    ],
)
def test_refused_before_any_change(mirror, message):
    with pytest.raises(HostRefused) as err:
        plan_mirror(mirror)
    assert message in err.value.reason
    if "no bundle" in message:
        assert "gpuprov bundle import" in (err.value.fix or "")


def test_other_roles_get_no_mirror_ops(sent):
    from gpuprov.deploys.mirror_server import mirror_server

    me = Host("ctl01", "10.0.0.9", "controller", "ctl", SSHSettings(), None, None)
    ops = plan(me, host_state_output("debian12"), deploy=mirror_server)
    assert ops == [] and sent == []
