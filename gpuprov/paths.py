"""Files on the hosts that gpuprov manages or reads, named once.

Facts read them (one command reads every managed file's digest), operations and deploys
write them; both import the names from here, so facts never import deploys.
"""

from __future__ import annotations

IDENTITY_FILE = "/etc/gpuprov/host.json"  # who this host is: preflight writes it
CDI_SPEC = "/etc/cdi/nvidia.yaml"  # the container device interface spec of the GPUs

# Every file the deploys manage, so one command reads all their digests.
NOUVEAU_CONF = "/etc/modprobe.d/blacklist-nouveau.conf"
CUDA_PROFILE = "/etc/profile.d/cuda.sh"
HF_ENV = "/etc/environment.d/90-gpuprov-hf.conf"
HF_PROFILE = "/etc/profile.d/gpuprov-hf.sh"
HF_SYSTEMD = "/etc/systemd/system.conf.d/gpuprov-mirror.conf"  # every system service
MIRROR_SOURCE_NAME = "gpuprov-mirror"
MIRROR_SOURCE = f"/etc/apt/sources.list.d/{MIRROR_SOURCE_NAME}.sources"
MIRROR_KEYRING = f"/etc/apt/keyrings/{MIRROR_SOURCE_NAME}.gpg"
# RHEL hosts: the mirror's RPM repository and the key files its gpgkey= names.
MIRROR_REPO = f"/etc/yum.repos.d/{MIRROR_SOURCE_NAME}.repo"
MIRROR_RPM_KEY = f"/etc/pki/rpm-gpg/RPM-GPG-KEY-{MIRROR_SOURCE_NAME}"  # the bundle key
MIRROR_RPM_UPSTREAM_KEYS = f"/etc/pki/rpm-gpg/RPM-GPG-KEY-{MIRROR_SOURCE_NAME}-upstream"
CONTAINERD_REGISTRY = "/etc/containerd/conf.d/90-gpuprov-registry.toml"
CONTAINERD_CERTS = "/etc/containerd/certs.d"
PODMAN_REGISTRY = "/etc/containers/registries.conf.d/50-gpuprov-mirror.conf"
# The daemon.json list entries gpuprov added (the user's own are never listed): when the
# host's mirror changes, these and only these are taken out again.
DOCKER_MIRROR_RECORD = "/etc/gpuprov/docker-mirror.json"
REGISTRY_UPSTREAMS = ("docker.io", "nvcr.io", "ghcr.io")
MANAGED_PATHS = (
    NOUVEAU_CONF,
    CUDA_PROFILE,
    HF_ENV,
    HF_PROFILE,
    HF_SYSTEMD,
    MIRROR_SOURCE,
    MIRROR_KEYRING,
    MIRROR_REPO,
    MIRROR_RPM_KEY,
    MIRROR_RPM_UPSTREAM_KEYS,
    CONTAINERD_REGISTRY,
    PODMAN_REGISTRY,
    *(f"{CONTAINERD_CERTS}/{r}/hosts.toml" for r in REGISTRY_UPSTREAMS),
)

# The mirror host (deploys/mirror_server.py, docs/mirror-host.md).
MIRROR_USER = "gpuprov-mirror"  # runs the three services; no login shell
MIRROR_BUNDLE_ROOT = "/srv/gpuprov"  # bundles/<id>/, current -> bundles/<id> (bundle import)
MIRROR_REGISTRY_ROOT = "/srv/gpuprov/registry"  # <id>/docker/registry/v2: the registry's storage
MIRROR_VENV_ROOT = "/opt/gpuprov"  # venv-<digest>/, venv -> venv-<digest>
MIRROR_CONFIG_DIR = "/etc/gpuprov/mirror"
MIRROR_NGINX_CONF = f"{MIRROR_CONFIG_DIR}/nginx-apt.conf"
MIRROR_REGISTRY_CONF = f"{MIRROR_CONFIG_DIR}/registry.yml"
MIRROR_SERVING = f"{MIRROR_CONFIG_DIR}/serving"  # the bundle id the services last started on
MIRROR_OWN_SOURCE = "/etc/apt/sources.list.d/gpuprov-bundle.sources"
MIRROR_APT_UNIT, MIRROR_REGISTRY_UNIT, MIRROR_MODELS_UNIT = (
    "gpuprov-apt.service",
    "gpuprov-registry.service",
    "gpuprov-models.service",
)
MIRROR_UNITS = (MIRROR_APT_UNIT, MIRROR_REGISTRY_UNIT, MIRROR_MODELS_UNIT)
# The packages' own units: masked before the packages are installed, so Debian's default
# nginx site (port 80, every interface) and registry (port 5000, every interface, writable)
# never start.
PACKAGED_UNITS = ("nginx.service", "docker-registry.service")
MIRROR_PACKAGES = ("nginx", "docker-registry")
MIRROR_MANAGED_PATHS = (
    MIRROR_NGINX_CONF,
    MIRROR_REGISTRY_CONF,
    MIRROR_SERVING,
    MIRROR_OWN_SOURCE,
    *(f"/etc/systemd/system/{u}" for u in MIRROR_UNITS),
)
