#!/bin/sh
# gpuprov TEST STAND-IN. Like the real DKMS package: on a host where no nvidia module is
# loaded yet, the new module is loaded at once (modprobe); if an older one is loaded, it stays
# loaded until the next reboot (hence "Driver/library version mismatch" until then).
set -e
if [ "$1" = "configure" ]; then
    run="${DPKG_ROOT:-}/run/nvidia-sim"
    if [ ! -e "$run/module-version" ]; then
        mkdir -p "$run"
        # Same refusals as the real modprobe: unsigned module under Secure Boot, proprietary
        # module on a GPU that needs the open one (Blackwell, Grace Hopper).
        refusal=$(python3 - "${DPKG_ROOT:-}/etc/gpuprov-sim/profile.json" "@FLAVOUR@" <<'PY' || true
import json, sys
try:
    p = json.load(open(sys.argv[1]))
except OSError:
    p = {}
if p.get("secure_boot") and not p.get("mok_enrolled"):
    print("modprobe: ERROR: could not insert 'nvidia': Key was rejected by service")
elif p.get("open_modules_required") and sys.argv[2] == "proprietary":
    print("modprobe: ERROR: could not insert 'nvidia': No such device")
PY
)
        if [ -n "$refusal" ]; then
            echo "$refusal" | tee "$run/load-error" >&2
        else
            echo "@VERSION@" > "$run/module-version"
            echo "@FLAVOUR@" > "$run/module-flavour"
            rm -f "$run/load-error"
            # The loaded driver's /dev/nvidia* nodes, as the boot-time loader makes them
            # (container runtimes stat them for CDI); the same code, from gpuprov-gpu-sim.
            if [ -z "${DPKG_ROOT:-}" ] && [ -e /usr/lib/gpuprov-sim/gpuprov-gpu-sim/simlib.py ]; then
                python3 - <<'PY' || true
import json, sys
sys.path.insert(0, "/usr/lib/gpuprov-sim/gpuprov-gpu-sim")
import simlib
simlib.make_device_nodes(json.load(open(simlib.PROFILE)))
PY
            fi
        fi
    fi
fi
exit 0
