# lib.sh — shell helpers shared by the loadtest scripts (sourced).

die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# free_port: a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

# wait_port PORT PID: until something listens on PORT (or PID dies).
wait_port() {
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# wait_ready HTTP_PORT PID: until the gateway's /readyz answers 200.
wait_ready() {
    for _ in $(seq 1 600); do
        if curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# hold_fixed_fields PK PID NUM SVC MER TID CL: the MessagePack the gateway
# passes to the authorize Functions as a hold's text fields (calls.rs
# hold_fixed_fields), for scripts that send the Function themselves. Each
# value must be shorter than 32 bytes (a fixstr).
hold_fixed_fields() {
    local names=(pk pid num svc mer tid cl) i s
    [ $# -eq 7 ] || die "hold_fixed_fields takes 7 values"
    for i in 0 1 2 3 4 5 6; do
        for s in "${names[$i]}" "${@:$((i + 1)):1}"; do
            [ ${#s} -lt 32 ] || die "hold field longer than 31 bytes: $s"
            # shellcheck disable=SC2059
            printf "\\x$(printf %x $((0xa0 + ${#s})))%s" "$s"
        done
    done
}

# stop_all: kills every process whose pid is in the PIDS array and waits for
# them (the scripts' EXIT trap).
stop_all() {
    local p
    for p in ${PIDS[@]+"${PIDS[@]}"}; do
        kill "$p" 2>/dev/null || true
    done
    for p in ${PIDS[@]+"${PIDS[@]}"}; do
        wait "$p" 2>/dev/null || true
    done
}

# release_bins [DIR]: prints the directory of the release gateway and load
# generator — DIR when given (prebuilt binaries, e.g. of another commit),
# else this tree's, built first. Dies when either binary is missing.
release_bins() {
    local bin=${1:-} b
    if [ -z "$bin" ]; then
        printf '==> building the release binaries\n' >&2
        cargo build --release --locked --bins -p callauth -p callauth-loadtest >&2
        bin="$(cargo metadata --format-version 1 --no-deps |
            grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)/release"
    fi
    for b in callauth-gateway callauth-loadtest; do
        [ -x "$bin/$b" ] || die "$bin/$b was not built"
    done
    printf '%s\n' "$bin"
}
