"""gpuprov: provision on-prem and air-gapped NVIDIA GPU clusters."""

__version__ = "0.1.0"
