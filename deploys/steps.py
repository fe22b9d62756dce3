"""The GPU node runbook's steps, and which of them one `plan`/`apply` runs.

`gpuprov plan|apply --only cuda` or `--skip dcgm` select steps by these names; preflight
always runs. An unselected step still adds one explicit skip operation, so every host of
a run has the same operation sequence (pyinfra identifies operations by position).
A step that depends on another the run leaves out is refused on the hosts where the
dependency is not already met (see `unmet`), with the reason and the flag that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuprov.errors import InputError

# In runbook order (deploys/gpu_node.py). `driver` includes the one controlled reboot
# and nvidia-persistenced.
STEPS: tuple[str, ...] = (
    "mirror-client",
    "nouveau",
    "driver",
    "fabricmanager",
    "cuda",
    "container",
    "dcgm",
)
ABOUT = {
    "mirror-client": "apt/dnf sources, registry mirrors and HF_ENDPOINT pointing at the site mirror",
    "nouveau": "nouveau blacklisted (and the initramfs rebuilt)",
    "driver": "NVIDIA driver packages at the pinned version, held; one reboot if the module changes; nvidia-persistenced",
    "fabricmanager": "nvidia-fabricmanager running at the driver's version (NVSwitch systems)",
    "cuda": "CUDA toolkits side by side, /usr/local/cuda, PATH",
    "container": "container runtime, nvidia-container-toolkit, CDI spec",
    "dcgm": "DCGM for the CUDA major, nv-hostengine running",
}


@dataclass(frozen=True)
class StepSelection:
    """The steps a run executes (all, by default)."""

    steps: tuple[str, ...] = STEPS
    flag: str = ""  # how it was asked for ("--only cuda"), for messages

    def runs(self, step: str) -> bool:
        return step in self.steps

    @property
    def everything(self) -> bool:
        return self.steps == STEPS

    def skip_reason(self, step: str) -> str:
        return f"not selected ({self.flag})"


ALL = StepSelection()


def parse(only: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> StepSelection:
    """`--only a,b` / `--skip c` (each repeatable, comma-separated) -> a selection.
    InputError naming the unknown step, with the known ones."""
    wanted = _names(only, "--only")
    dropped = _names(skip, "--skip")
    if not wanted and not dropped:
        return ALL
    chosen = [s for s in STEPS if (not wanted or s in wanted) and s not in dropped]
    if not chosen:
        raise InputError(
            "--only/--skip leave no step to run (preflight alone: use `gpuprov facts`)"
        )
    parts = []
    if wanted:
        parts.append(f"--only {','.join(s for s in STEPS if s in wanted)}")
    if dropped:
        parts.append(f"--skip {','.join(s for s in STEPS if s in dropped)}")
    return StepSelection(tuple(chosen), " ".join(parts))


def _names(values: tuple[str, ...], flag: str) -> set[str]:
    from gpuprov.inventory.reader import suggest

    names = {v.strip() for item in values for v in item.split(",") if v.strip()}
    for name in sorted(names):
        if name not in STEPS:
            raise InputError(
                f"{flag} {name}: not a step{suggest(name, STEPS)} (steps: {', '.join(STEPS)}; "
                "preflight always runs)"
            )
    return names
