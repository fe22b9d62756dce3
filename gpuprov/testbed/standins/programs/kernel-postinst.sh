#!/bin/sh
# gpuprov TEST STAND-IN. Like the real DKMS package: on a host where no nvidia module is
# loaded yet, the new module is loaded at once (modprobe); if an older one is loaded, it stays
# loaded until the next reboot (hence "Driver/library version mismatch" until then).
set -e
if [ "$1" = "configure" ]; then
    run="${DPKG_ROOT:-}/run/nvidia-sim"
    if [ ! -e "$run/module-version" ]; then
        mkdir -p "$run"
        if python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); sys.exit(0 if p.get("secure_boot") and not p.get("mok_enrolled") else 1)' "${DPKG_ROOT:-}/etc/gpuprov-sim/profile.json" 2>/dev/null; then
            echo "modprobe: ERROR: could not insert 'nvidia': Key was rejected by service" | tee "$run/load-error" >&2
        else
            echo "@VERSION@" > "$run/module-version"
            echo "@FLAVOUR@" > "$run/module-flavour"
            rm -f "$run/load-error"
        fi
    fi
fi
exit 0
