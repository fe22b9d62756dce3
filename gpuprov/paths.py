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
MIRROR_SOURCE_NAME = "gpuprov-mirror"
MIRROR_SOURCE = f"/etc/apt/sources.list.d/{MIRROR_SOURCE_NAME}.sources"
MIRROR_KEYRING = f"/etc/apt/keyrings/{MIRROR_SOURCE_NAME}.gpg"
CONTAINERD_REGISTRY = "/etc/containerd/conf.d/90-gpuprov-registry.toml"
CONTAINERD_CERTS = "/etc/containerd/certs.d"
PODMAN_REGISTRY = "/etc/containers/registries.conf.d/50-gpuprov-mirror.conf"
REGISTRY_UPSTREAMS = ("docker.io", "nvcr.io", "ghcr.io")
MANAGED_PATHS = (
    NOUVEAU_CONF,
    CUDA_PROFILE,
    HF_ENV,
    HF_PROFILE,
    MIRROR_SOURCE,
    MIRROR_KEYRING,
    CONTAINERD_REGISTRY,
    PODMAN_REGISTRY,
    *(f"{CONTAINERD_CERTS}/{r}/hosts.toml" for r in REGISTRY_UPSTREAMS),
)
