#!/usr/bin/env bash
# Read-only capture of a real GPU host's tool outputs, for parser fixtures.
#
# Run on a lent GPU machine (device tool) from the repo root:  bash scripts/gpu-capture.sh
# Writes into $OUT (default ./gpu-capture). It NEVER changes GPU state: no MIG, clock,
# persistence or reset commands, no driver installs. Every command is a query.
set -uo pipefail
OUT=${OUT:-./gpu-capture}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."

run() {  # run NAME CMD... : stdout+stderr to $OUT/NAME, exit status appended to index
  local name=$1; shift
  timeout 120 "$@" >"$OUT/$name" 2>&1
  echo "$name	rc=$?	$*" >>"$OUT/index.tsv"
}

: >"$OUT/index.tsv"
run nvidia-smi_q_x.xml      nvidia-smi -q -x
run nvidia-smi_q.txt        nvidia-smi -q
run nvidia-smi_query.csv    nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,driver_version,vbios_version,persistence_mode,mig.mode.current,memory.total,memory.used,temperature.gpu,power.draw,power.limit,utilization.gpu,clocks.sm,clocks.max.sm,ecc.errors.uncorrected.volatile.total,ecc.errors.uncorrected.aggregate.total,retired_pages.pending,fabric.state,fabric.status --format=csv
run nvidia-smi_topo_m.txt   nvidia-smi topo -m
run nvidia-smi_L.txt        nvidia-smi -L
run lspci_nn.txt            lspci -nn
run lspci_nvidia.txt        lspci -nn -d 10de:
run os-release.txt          cat /etc/os-release
run driver-version.txt      cat /proc/driver/nvidia/version
run mokutil.txt             mokutil --sb-state
run dcgmi_discovery.txt     dcgmi discovery -l

# gpuprov's own view of this host, through the same code paths as `facts` / `verify`.
if [[ -x .venv/bin/gpuprov ]] || make -s venv >/dev/null 2>&1; then
  run gpuprov_facts.json  .venv/bin/gpuprov lab capture facts
  run gpuprov_verify.json .venv/bin/gpuprov lab capture verify
fi
tar -czf "$OUT/all.tgz" -C "$OUT" --exclude all.tgz . 2>/dev/null
echo "captured into $OUT"; cat "$OUT/index.tsv"
