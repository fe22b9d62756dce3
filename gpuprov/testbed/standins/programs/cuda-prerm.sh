#!/bin/sh
# gpuprov TEST STAND-IN: drop the toolkit's alternatives on removal, as NVIDIA's packages do.
set -e
if [ "$1" = "remove" ] || [ "$1" = "deconfigure" ]; then
    update-alternatives --remove cuda /usr/local/cuda-@SERIES@ || true
    update-alternatives --remove cuda-@MAJOR@ /usr/local/cuda-@SERIES@ || true
fi
exit 0
