from __future__ import annotations

from pathlib import Path

from gpuprov.inventory.loader import load_inventory

from .conftest import EXAMPLE, MINIMAL


def one(problems, text):
    found = problems(text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_example_resolves_every_host():
    c = load_inventory(EXAMPLE)
    assert c.name == "hallb-hgx"
    assert len(c.gpu_hosts()) == 8
    assert c.mirror_host().name == "mirror01"
    g = c.hosts["gpu005"]
    assert g.rack == "b02" and g.domains == {"rack": "b02"}
    assert g.stack.driver.version == "580.95.05" and g.stack.cuda == ("12.8", "13.0")
    assert g.ssh.user == "ubuntu" and g.ssh.sudo
    assert c.hosts["mirror01"].stack is None
    assert c.hosts["gpu008"].vars == {"note": "replaced baseboard 2026-03"}
    # locations point at the host's key in the file
    assert (
        c.hosts["gpu001"].location.line
        == EXAMPLE.read_text().splitlines().index("      gpu001: {address: 10.20.1.11, rack: b01}")
        + 1
    )


def test_lab_inventory_paths_relative_to_file():
    lab = EXAMPLE.parent / "lab.yaml"
    c = load_inventory(lab)
    h = c.hosts["lab-gpu03"]
    assert h.ssh.key == (lab.parent.parent / ".cache/lab/id_ed25519").resolve()
    assert c.known_hosts_path == (lab.parent.parent / ".cache/lab/known_hosts").resolve()
    assert h.vars == {"sim_profile": "hgx-h100-8"} and h.rack == "r2"
    assert [x.address for x in c.gpu_hosts()] == [f"10.213.0.1{i}" for i in range(1, 5)]


def test_cluster_group_host_override_order(write):
    text = MINIMAL.replace(
        "    profile: hgx-h100-8\n",
        '    profile: hgx-h100-8\n    stack: {cuda: ["12.8"], dcgm: false}\n    ssh: {user: ops, port: 2200}\n',
    ).replace(
        "g2: {address: 10.0.0.2, rack: r2}",
        'g2: {address: 10.0.0.2, rack: r2, port: 2201, stack: {driver: {version: "580.82.07"}}}',
    )
    c = load_inventory(write(text))
    g1, g2 = c.hosts["g1"], c.hosts["g2"]
    assert g1.stack.cuda == ("12.8",) and not g1.stack.dcgm
    assert g1.stack.driver.version == "580.95.05" and g2.stack.driver.version == "580.82.07"
    assert g2.stack.driver.branch == "580" and g2.stack.os == "debian12"
    assert (g1.ssh.user, g1.ssh.port, g2.ssh.port) == ("ops", 2200, 2201)
    assert c.hosts["mirror01"].ssh.user == "root"
    assert g1.ssh.known_hosts == c.known_hosts_path == c.path.absolute().parent / "known_hosts"
    assert g1.stack.cuda_default == "12.8"


def test_unknown_key_suggests(problems):
    p = one(problems, MINIMAL.replace("  name: t", "  nmae: t"))
    assert (p.location.line, p.location.col) == (2, 3)
    assert "unknown key 'nmae'" in p.message and "did you mean 'name'?" in p.message


def test_wrong_types(problems):
    found = problems(
        MINIMAL.replace(
            "  mirror: {host: mirror01}", "  mirror: {host: mirror01, apt_port: eighty}"
        )
        .replace("    hosts:\n      g1", "    vars: [1]\n    hosts:\n      g1")
        .replace("  name: t", "  name: t\n  ssh: {sudo: yes-please, connect_timeout: 1.5}")
    )
    msgs = "\n".join(str(p) for p in found)
    assert "apt_port: expected an integer, got a string ('eighty')" in msgs
    assert "vars: expected a mapping, got a list" in msgs
    assert "sudo: expected true or false" in msgs
    assert "connect_timeout: expected an integer, got a number (1.5)" in msgs
    assert all(p.location.line > 0 for p in found)


def test_duplicate_host_and_address(problems):
    text = MINIMAL.replace(
        "      mirror01: {address: 10.0.0.5}",
        "      mirror01: {address: 10.0.0.5}\n      g1: {address: 10.0.0.2}",
    )
    found = problems(text)
    msgs = [str(p) for p in found]
    assert any("duplicate host 'g1' (first defined at" in m and ":12:7)" in m for m in msgs), msgs
    text = MINIMAL.replace("g2: {address: 10.0.0.2", "g2: {address: 10.0.0.1")
    p = one(problems, text)
    assert (p.location.line, p.location.col) == (13, 21)
    assert (
        "duplicate address '10.0.0.1'" in p.message and "'g1'" in p.message and ":12:7" in p.message
    )


def test_unknown_profile_lists_known(problems):
    p = one(problems, MINIMAL.replace("profile: hgx-h100-8", "profile: hgx-h100"))
    assert "unknown profile 'hgx-h100'" in p.message and "hgx-b200-8" in p.message
    assert p.location.line == 10


def test_mirror_host_missing_or_unknown(problems):
    p = one(problems, MINIMAL.replace("mirror: {host: mirror01}", "mirror: {apt_port: 8080}"))
    assert "missing `host`" in p.message and p.location.line == 7
    p = one(problems, MINIMAL.replace("mirror: {host: mirror01}", "mirror: {host: mirror1}"))
    assert "'mirror1' is not a host" in p.message and "did you mean 'mirror01'?" in p.message


def test_bad_versions(problems):
    p = one(problems, MINIMAL.replace('version: "580.95.05"', 'version: "570.95.05"'))
    assert "not of branch 580" in p.message and (p.location.line, p.location.col) == (5, 38)
    p = one(problems, MINIMAL.replace('version: "580.95.05"', 'version: "580"'))
    assert 'like "580.95.05"' in p.message
    p = one(problems, MINIMAL.replace('branch: "580"', 'branch: "r580"'))
    assert 'branch like "580"' in p.message
    p = one(problems, MINIMAL.replace('cuda: ["12.8", "13.0"]', 'cuda: ["12.8", "13"]'))
    assert 'CUDA version like "12.8"' in p.message and (p.location.line, p.location.col) == (6, 20)


def test_bad_percentages(problems):
    base = MINIMAL.replace("  mirror: {host", "  rollout: {ROLL}\n  mirror: {host")
    for roll, want in [
        ('canary: "101%"', "bad percentage '101%'"),
        ('max_fail: "5 %"', "bad percentage"),
        ('waves: ["50%", "20%"]', "waves are cumulative"),
        ('waves: ["0%"]', "bad percentage '0%'"),
        ("waves: []", "non-empty list"),
        ("canary: -1", "0 or more"),
    ]:
        p = one(problems, base.replace("ROLL", roll))
        assert want in p.message, (roll, p.message)
        assert p.location.line == 7


def test_secrets_refused(problems):
    p = one(
        problems,
        MINIMAL.replace("  name: t", "  name: t\n  ssh: {sudo: true, sudo_password: hunter2}"),
    )
    assert "secrets never go in the inventory" in p.message and "sudo_password_env" in p.message
    assert "hunter2" not in str(p)
    p = one(problems, MINIMAL.replace("rack: r1}", "rack: r1, vars: {api_token: x}}"))
    assert "api_token" in p.message and "secrets" in p.message


def test_yaml_syntax_and_duplicate_keys(problems):
    p = one(problems, MINIMAL.replace("rack: r1}", "rack: r1}}"))
    assert p.message.startswith("YAML syntax error") and p.location.line == 12
    p = one(problems, MINIMAL + "cluster: {name: again}\n")
    assert "duplicate key 'cluster' (first at line 1)" in p.message and p.location.line == 18


def test_empty_nonmapping_missing(problems, write, tmp_path):
    assert "empty" in one(problems, "").message
    assert "empty" in one(problems, "# only a comment\n").message
    assert "must be a mapping" in one(problems, "- a\n- b\n").message
    assert "must be a mapping" in one(problems, "just text\n").message
    from gpuprov.errors import InputError

    try:
        load_inventory(tmp_path / "nope.yaml")
    except InputError as exc:
        assert "not found" in str(exc) and "nope.yaml" in str(exc)
    else:
        raise AssertionError("no error")


def test_all_problems_reported_at_once(problems):
    text = (
        MINIMAL.replace("  name: t", "  nmae: t")
        .replace("profile: hgx-h100-8", "profile: nope")
        .replace("g2: {address: 10.0.0.2", "g2: {address: 10.0.0.1")
    )
    found = problems(text)
    assert len(found) == 3
    assert [p.location.line for p in found] == sorted(p.location.line for p in found)


def test_gpu_host_needs_driver_and_profile(problems):
    text = MINIMAL.replace(
        '    driver: {branch: "580", version: "580.95.05", modules: auto}\n', ""
    ).replace("    profile: hgx-h100-8\n", "")
    msgs = [p.message for p in problems(text)]
    assert any("no driver branch" in m for m in msgs)
    assert any("has no profile" in m for m in msgs)


def test_stack_only_on_gpu_hosts(problems):
    p = one(
        problems,
        MINIMAL.replace("    role: mirror\n", "    role: mirror\n    stack: {dcgm: false}\n"),
    )
    assert "only gpu hosts have a stack" in p.message


def test_mirror_role_inferred(write):
    text = MINIMAL.replace("    role: mirror\n", "")
    c = load_inventory(write(text))
    assert c.hosts["mirror01"].role == "mirror" and c.hosts["mirror01"].stack is None


def test_drain_template_placeholders(problems):
    base = MINIMAL.replace(
        "  mirror: {host", "  rollout: {drain: 'drain {hostname}'}\n  mirror: {host"
    )
    assert "unknown placeholder {hostname}" in one(problems, base).message


def test_path_argument_accepts_str(write):
    assert load_inventory(str(write(MINIMAL))).name == "t"
    assert isinstance(load_inventory(write(MINIMAL)).path, Path)


def test_address_must_be_a_host_name_or_ip(problems):
    """Issue 13 item 3: `$(touch${IFS}/tmp/x)` passed (only whitespace was refused) and
    ran in hook commands that quoted {address} again or used {address!r}."""
    text = MINIMAL.replace("g1: {address: 10.0.0.1", "g1: {address: '$(touch${IFS}/tmp/x)'")
    p = one(problems, text)
    assert "groups.gpu.hosts.g1.address" in p.message and "IP address" in p.message
    assert (p.location.line, p.location.col) == (12, 21)


def test_ssh_user_cannot_be_an_option(problems):
    """Issue 13 item 15: `-oProxyCommand=...` became an ssh option in hook commands."""
    text = MINIMAL.replace("      g2: {address: 10.0.0.2, rack: r2}",
                           "      g2: {address: 10.0.0.2, rack: r2, ssh: {user: '-oProxyCommand=touch /tmp/x'}}")  # fmt: skip
    assert "ssh.user: expected a login name" in one(problems, text).message


def test_trailing_newline_in_names_is_refused(problems):
    """Issue 13 item 19: `$` anchors let a final newline through."""
    text = MINIMAL.replace(
        'branch: "580", version: "580.95.05"', 'branch: "580\\n", version: "580.95.05"'
    )
    assert "driver.branch" in problems(text)[0].message
    text = MINIMAL.replace('cuda: ["12.8", "13.0"]', 'cuda: ["12.8\\n"]')
    assert "cuda" in one(problems, text).message
