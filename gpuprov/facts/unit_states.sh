# unit_states PREFIX UNIT...: one line "<PREFIX>UNIT ACTIVE ENABLED" per unit ("-": unknown),
# in the order asked (PREFIX may be empty: the line then starts with the unit). One
# `systemctl show` asks systemd for every unit in one D-Bus call (one `is-active` plus one
# `is-enabled` per unit cost ~4x that on the test bed's VM, seconds on a loaded host); it
# prints one block per unit, in the order asked, blank-line separated. Without a running
# systemd (a chroot, the test bed's light hosts) `show` fails and is-enabled still reads
# the unit files: one unit at a time then, as is-enabled stops at the first unknown unit.
# Shared by HostState's services section and the mirror host's section (POSIX sh).
unit_states() {
    _us_prefix=$1; shift
    # shellcheck disable=SC2046 # one word per unit: unit names have no spaces
    if _us_show=$(systemctl show -p ActiveState -p UnitFileState $(printf '%s.service ' "$@") 2>/dev/null) \
        && [ -n "$_us_show" ]; then
        printf '%s\n\n' "$_us_show" | awk -v units="$*" -v prefix="$_us_prefix" '
            BEGIN { n = split(units, name, " "); i = 0 }
            /^ActiveState=/ { a = substr($0, 13) }
            /^UnitFileState=/ { e = substr($0, 15) }
            /^$/ { if (a != "" || e != "") { i++; printf "%s%s %s %s\n", prefix, name[i], (a == "" ? "-" : a), (e == "" ? "-" : e) }; a = ""; e = "" }'
    else
        for _us_u in "$@"; do
            _us_a=$(systemctl is-active "$_us_u.service" 2>/dev/null)
            _us_e=$(systemctl is-enabled "$_us_u.service" 2>/dev/null)
            printf '%s%s %s %s\n' "$_us_prefix" "$_us_u" "${_us_a:--}" "${_us_e:--}"
        done
    fi
}
