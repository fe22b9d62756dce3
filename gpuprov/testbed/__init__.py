"""The test bed: real Debian hosts (VMs, light hosts) and the stand-in NVIDIA packages."""
