#!/bin/sh
# gpuprov TEST STAND-IN: register the toolkit as the `cuda` and `cuda-MAJOR` alternatives,
# as NVIDIA's cuda-toolkit-X-Y-config-common packages do (priority from the version).
set -e
if [ "$1" = "configure" ]; then
    update-alternatives --install /usr/local/cuda cuda /usr/local/cuda-@SERIES@ @PRIORITY@
    update-alternatives --install /usr/local/cuda-@MAJOR@ cuda-@MAJOR@ /usr/local/cuda-@SERIES@ @PRIORITY@
fi
exit 0
