#!/bin/sh
# gpuprov TEST STAND-IN: enable the unit as deb-systemd-helper would, start it when systemd runs.
set -e
if [ "$1" = "configure" ]; then
    wants="${DPKG_ROOT:-}/etc/systemd/system/multi-user.target.wants"
    mkdir -p "$wants"
    ln -sf /lib/systemd/system/@UNIT@ "$wants/@UNIT@"
    if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        systemctl restart @UNIT@ || true
    fi
fi
exit 0
