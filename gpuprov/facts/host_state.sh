# gpuprov HostState: one POSIX sh script, one SSH round trip, every fact the deploys need.
# Output: sections, each "@@gpuprov:begin NAME", the raw output, a newline, then
# "@@gpuprov:end NAME RC". RC 127 means the tool is not installed. Never fails as a whole
# (pyinfra would treat the fact as failed); each section tolerates its tool missing.
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
LC_ALL=C
export PATH LC_ALL

begin() { printf '@@gpuprov:begin %s\n' "$1"; }
end() { printf '\n@@gpuprov:end %s %s\n' "$1" "$2"; }
have() { command -v "$1" >/dev/null 2>&1; }
# run NAME CMD...: the command's stdout+stderr as section NAME, 127 when CMD is absent.
run() {
    _name=$1; shift
    begin "$_name"
    if have "$1"; then "$@" 2>&1; end "$_name" $?; else end "$_name" 127; fi
}

begin os-release
if [ -r /etc/os-release ]; then cat /etc/os-release; end os-release 0
elif [ -r /usr/lib/os-release ]; then cat /usr/lib/os-release; end os-release 0
else end os-release 127; fi

run kernel uname -r

_k=$(uname -r)
begin headers
if [ -d "/lib/modules/$_k/build" ] || [ -d "/usr/src/linux-headers-$_k" ] || [ -d "/usr/src/kernels/$_k" ]; then
    printf 'yes'; else printf 'no'; fi
end headers 0

run secureboot mokutil --sb-state

begin nouveau
if [ -d /sys/module/nouveau ]; then printf 'loaded'; else printf 'absent'; fi
end nouveau 0

run lspci lspci -nn

# Loaded kernel module version. /run/nvidia-sim/module-version is written by the test
# bed's GPU simulator (stand-in driver packages); real hosts never have it.
begin nvidia-module
if [ -r /sys/module/nvidia/version ]; then cat /sys/module/nvidia/version; end nvidia-module 0
elif [ -r /proc/driver/nvidia/version ]; then cat /proc/driver/nvidia/version; end nvidia-module 0
elif [ -r /run/nvidia-sim/module-version ]; then cat /run/nvidia-sim/module-version; end nvidia-module 0
else end nvidia-module 127; fi

begin nvswitch
if [ -d /proc/driver/nvidia-nvswitch/devices ]; then ls -1 /proc/driver/nvidia-nvswitch/devices; end nvswitch 0
else end nvswitch 127; fi

# Only the packages the deploys reason about (globs; dpkg-query exits 1 when one matches
# nothing, which is not an error here). Every package of packages.yaml must match one
# (tests/gpuprov/facts/test_host_state.py): one that does not reads as absent, and each
# apply installs it again.
begin packages
if have dpkg-query; then
    dpkg-query -W -f='${Package}\t${Version}\t${Status}\n' 'nvidia*' 'libnvidia*' 'cuda*' \
        'libcuda*' 'datacenter-gpu-manager*' 'docker*' 'containerd*' 'podman' \
        'linux-headers*' 'linux-image*' 'linux-modules-nvidia*' 'dkms' 'mokutil' 2>/dev/null
    end packages 0
elif have rpm; then
    rpm -qa --qf '%{NAME}\t%{VERSION}-%{RELEASE}\tinstall ok installed\n' 'nvidia*' \
        'libnvidia*' 'cuda*' 'datacenter-gpu-manager*' 'docker*' 'containerd*' 'podman' \
        'kernel-devel*' 'kernel-headers*' 'kmod-nvidia*' 'dkms' \
        'python3-dnf-plugin-versionlock' 2>/dev/null
    end packages 0
else end packages 127; fi

# Held packages, as `apt-mark showhold` lists them, read from dpkg's selections: apt-mark
# itself takes seconds to load the apt cache, which would dominate the whole fact.
begin holds
if have dpkg-query; then
    dpkg-query -W -f='${db:Status-Want} ${Package}\n' 2>/dev/null | awk '$1 == "hold" { print $2 }'
    end holds 0
else end holds 127; fi

# dnf's versionlock list (RHEL): the driver's hold, one NEVRA pattern a line (comments
# and blank lines dropped, bounded).
begin versionlock
if [ -r /etc/dnf/plugins/versionlock.list ]; then
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' /etc/dnf/plugins/versionlock.list | head -n 2000
    end versionlock 0
else end versionlock 127; fi

run df df -Pk /

# An install cut short (SSH drop, kill): dpkg --audit names what is left unpacked or
# half-configured (empty when all is well; read-only, takes no lock), and lslocks who
# still holds dpkg's locks (a dpkg or apt that lost its SSH session may still run).
begin dpkg
if have dpkg; then
    dpkg --audit 2>&1 | head -n 200
    if have lslocks; then
        lslocks -n -r -o PID,PATH 2>/dev/null | while read -r _pid _path; do
            case "$_path" in /var/lib/dpkg/lock*) printf 'lock %s %s\n' "$_pid" "$_path" ;; esac
        done
    fi
    end dpkg 0
else end dpkg 127; fi

run nvidia-smi nvidia-smi -q -x

# "UNIT ACTIVE ENABLED" per unit ("-": unknown): unit_states (unit_states.sh, which
# host_state.py puts before this script), one `systemctl show` for all five.
begin services
if have systemctl; then
    unit_states "" nvidia-persistenced nvidia-fabricmanager nvidia-dcgm containerd docker
    end services 0
else end services 127; fi

begin cdi
if [ -d /etc/cdi ]; then ls -1 /etc/cdi; end cdi 0; else end cdi 127; fi

begin cuda
if [ -e /usr/local/cuda ] || [ -L /usr/local/cuda ]; then
    printf 'link %s\n' "$(readlink /usr/local/cuda)"
fi
# The CUDA packages register /usr/local/cuda as the `cuda` alternative (auto or manual).
for _a in /var/lib/dpkg/alternatives/cuda /var/lib/alternatives/cuda; do
    [ -f "$_a" ] && printf 'alt %s %s\n' "$(head -n1 "$_a")" "$(readlink /etc/alternatives/cuda)"
done
for _d in /usr/local/cuda-*; do
    [ -d "$_d" ] && printf 'dir %s\n' "$_d"
done
end cuda 0
exit 0
