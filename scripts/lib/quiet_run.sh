# shellcheck shell=bash
# Sourced by the tool-installing check scripts (container, deploy, lock).
# quiet_run MESSAGE COMMAND...: run COMMAND with its output in a log; on failure print the
# log's tail (without pip's notes about the machine's local mirror) and MESSAGE, and
# return COMMAND's exit status.
quiet_run() {
    local message="$1" log rc
    shift
    log="$(mktemp)"
    "$@" >"$log" 2>&1
    rc=$?
    if [[ $rc -ne 0 ]]; then
        grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -30 >&2
        echo "$message" >&2
    fi
    rm -f "$log"
    return "$rc"
}
