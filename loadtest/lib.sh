# lib.sh — shell helpers shared by compare.sh and instructions.sh (sourced).

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
