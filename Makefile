# gpuprov developer entry points. Every target installs what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-e2e test-slow test-fast test-hosts test-vm lint demo demo-clean lab-deps lab-box system-deps venv bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the test bed and the lab need (debootstrap, qemu, sshd, gpg, nginx...).
system-deps:
	bash scripts/install-system-deps.sh

## The test suite (after ruff and mypy): fast tier, light hosts and the test-bed VMs. This is
## what CI runs.
## The long end-to-end VM scenarios are `make test-slow` (docs/testing.md).
test: system-deps $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) scripts/typecheck.py
	$(PY) -m pytest -m "not slow"

## Fast tier: no hosts, no VMs (a minute or two).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not host and not vm"

test-hosts: system-deps $(STAMP)
	$(PY) -m pytest -m "host and not vm"

test-vm: system-deps $(STAMP)
	$(PY) -m pytest -m "vm and not slow"

## End-to-end on VMs, run by CI after `make test`: the GPU node install -> verify ->
## idempotence -> 570->580 upgrade -> faults; the Debian 13 container path on one VM (docker
## with CDI -> verify runs a GPU container -> idempotence -> faults -> podman on the same VM);
## and the Vagrant lab across the air gap (mirror01 + gpu01: the cut proven, bundle -> FAT32
## image -> verify -> import, dry run changes nothing, apply mirror first, verify, image pull
## and model fetch from the GPU VM through the mirror only, destroy). Times in docs/testing.md.
E2E_TESTS := tests/deploys/test_gpu_node_vm.py tests/deploys/test_container_vm.py \
	tests/gpuprov/lab/test_vagrant_lab.py
test-e2e: system-deps lab-deps $(STAMP)
	$(PY) -m pytest -m slow $(E2E_TESTS)

## Every long end-to-end VM scenario: the three above plus the mirror host VM.
test-slow: system-deps lab-deps $(STAMP)
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/typecheck.py

# Vagrant + vagrant-libvirt + libvirt, daemons running (only the lab and its tests need them).
lab-deps:
	bash scripts/install-lab-deps.sh

## The local Vagrant box gpuprov/debian12-local, from the test bed rootfs (docs/lab.md).
lab-box: system-deps lab-deps $(STAMP)
	$(VENV)/bin/gpuprov lab box

## The README's main job on a local lab, across a real air gap (see README, docs/lab.md).
demo: system-deps $(STAMP)
	$(VENV)/bin/gpuprov lab demo

## Everything `make demo` made: VMs, firewall table, box, lab dir (bundle, stick image, keys).
demo-clean: $(STAMP)
	$(VENV)/bin/gpuprov lab clean

bench: system-deps $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
