"""Stand-in NVIDIA packages for the test bed: real .debs (dpkg-deb) with NVIDIA's package names,
versions and dependency shape, whose programs act like the real ones on a simulated GPU.

They are test fixtures, labelled as such in every Description, and never enter a real bundle.
"""

from __future__ import annotations

from .build import build_standins
from .catalog import LABEL, SIM_LOAD, all_specs, driver_releases
from .profiles import PROFILES, render_profile
from .sim import PROFILE_PATH, RUN_DIR, install_sim_profile, reboot_command

__all__ = [
    "LABEL",
    "PROFILES",
    "PROFILE_PATH",
    "RUN_DIR",
    "SIM_LOAD",
    "all_specs",
    "build_standins",
    "driver_releases",
    "install_sim_profile",
    "reboot_command",
    "render_profile",
]
