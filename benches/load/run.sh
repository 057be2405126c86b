#!/usr/bin/env bash
# Load comparison: levee vs a bare Pingora proxy vs nginx, same upstream, same machine, same run.
#
# Measures requests/s and CPU time per request (utime+stime of the proxy process over the wrk
# run, divided by the requests wrk counted) for levee, bare Pingora and nginx, levee's
# cache-hit path, and the floor between bare Pingora and levee:
#   levee  - `levee run` with routing (12 routes), a bulkhead pool and metrics (always on)
#   hit    - the same levee process, the same request under /cached/: its route cache answers
#   bare   - examples/bare_proxy.rs: Pingora with `upstream_peer` returning a fixed peer
#   floor  - the same example with --hygiene: bare plus only the per-request work issue #2
#            requires (request id, X-Forwarded-*, hop-by-hop strip, upstream timeouts), done
#            with levee's own functions: no routing, bulkhead, metrics or edge limits
#   nginx  - nginx as a plain reverse proxy (upstream keepalive, HTTP/1.1, access_log off)
# Each proxy has one worker and is pinned to core 0 (PROXY_CPU). The upstream (nginx answering
# `200 ok`) and wrk share core 1 (LOAD_CPU). Proxies are measured interleaved, ROUNDS times,
# rotating which goes first; the summary is the median of the rounds.
#
# Usage:  benches/load/run.sh                  (DURATION=10 ROUNDS=3 by default)
#         DURATION=10 ROUNDS=3 CONNS=32 benches/load/run.sh
# Env:    DURATION (s, per wrk run), ROUNDS, CONNS (wrk -c), WARMUP (s, per proxy, once),
#         PROXY_CPU, LOAD_CPU, BASE_PORT (uses BASE_PORT..BASE_PORT+5), SKIP_BUILD=1,
#         ONLY (a subset of "levee hit bare floor nginx", e.g. ONLY="levee bare floor"),
#         RUST_PRELOAD (a malloc library LD_PRELOADed into levee, bare and floor only, e.g.
#         /usr/lib/x86_64-linux-gnu/libmimalloc.so.2: the allocator experiment in RESULTS.md)
# Needs:  wrk, nginx, taskset, curl (apt-get install wrk nginx-light util-linux curl)
# Output: benches/load/out/<timestamp>/ (raw wrk output, configs, logs, results.tsv,
#         summary.md); the markdown summary is also printed, ready for benches/RESULTS.md.
# Only 127.0.0.1 is used; every process started here is stopped on exit.

set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_PORT=${BASE_PORT:-18400}
REQ_PATH=${REQ_PATH:-/api/catalog/items?id=42}
RUST_PRELOAD=${RUST_PRELOAD:-}
if [[ -n $RUST_PRELOAD && ! -r $RUST_PRELOAD ]]; then
    echo "run.sh: RUST_PRELOAD=$RUST_PRELOAD is not a readable file" >&2
    exit 2
fi

for v in DURATION ROUNDS CONNS WARMUP PROXY_CPU LOAD_CPU BASE_PORT; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]]; then
        echo "run.sh: $v must be a non-negative integer (got '${!v}')" >&2
        exit 2
    fi
done
if ((DURATION < 1 || ROUNDS < 1 || ROUNDS > 50 || CONNS < 1)); then
    echo "run.sh: need DURATION >= 1, 1 <= ROUNDS <= 50, CONNS >= 1" >&2
    exit 2
fi

UP_PORT=$BASE_PORT
LEVEE_PORT=$((BASE_PORT + 1))
LEVEE_ADMIN_PORT=$((BASE_PORT + 2))
BARE_PORT=$((BASE_PORT + 3))
NGINX_PORT=$((BASE_PORT + 4))
FLOOR_PORT=$((BASE_PORT + 5))

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# ---------------------------------------------------------------------------------------------
# Prerequisites (installs nothing).

missing=()
command -v wrk >/dev/null || missing+=("wrk")
command -v nginx >/dev/null || missing+=("nginx-light")
command -v taskset >/dev/null || missing+=("util-linux")
command -v curl >/dev/null || missing+=("curl")
command -v cargo >/dev/null || { echo "run.sh: cargo not found (install Rust)" >&2; exit 1; }
if ((${#missing[@]})); then
    echo "run.sh: missing tools; install them with:" >&2
    echo "    apt-get install -y ${missing[*]}" >&2
    exit 1
fi
NCPU=$(nproc)
if ((PROXY_CPU >= NCPU || LOAD_CPU >= NCPU)); then
    echo "run.sh: PROXY_CPU=$PROXY_CPU / LOAD_CPU=$LOAD_CPU but only $NCPU CPU(s)" >&2
    exit 1
fi
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Build.

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    echo "== building (release)"
    (cd "$ROOT" && cargo build --release --bin levee --example bare_proxy)
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LEVEE_BIN=$TARGET_DIR/release/levee
BARE_BIN=$TARGET_DIR/release/examples/bare_proxy
for b in "$LEVEE_BIN" "$BARE_BIN"; do
    [[ -x $b ]] || { echo "run.sh: $b not built" >&2; exit 1; }
done

# ---------------------------------------------------------------------------------------------
# Work dirs, cleanup.

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/benches/load/out/$STAMP
mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/levee-load.XXXXXX")

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # bounded wait: up to ~5s per process, then SIGKILL
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in "$UP_PORT" "$LEVEE_PORT" "$LEVEE_ADMIN_PORT" "$BARE_PORT" "$NGINX_PORT" "$FLOOR_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "run.sh: 127.0.0.1:$port is already in use (set BASE_PORT)" >&2
        exit 1
    fi
done

# Wait (bounded) until URL answers 200.
wait_ok() {
    local url=$1 name=$2 code
    for _ in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    echo "run.sh: $name did not answer 200 at $url (last: $code); logs in $OUT" >&2
    exit 1
}

# "utime stime" (clock ticks) of a process and its direct children (nginx: master + worker).
# /proc/PID/stat fields 14 and 15; the comm field may hold spaces, so split after the last ')'.
proc_ticks() {
    local pid=$1 ut=0 st=0 t stat rest kids c
    kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
    for c in "$pid" $kids; do
        stat=$(cat /proc/"$c"/stat 2>/dev/null) || continue
        rest=${stat##*) }
        read -r -a t <<<"$rest"
        # rest[0] is field 3 (state), so field N is rest[N-3]
        ut=$((ut + t[11]))
        st=$((st + t[12]))
    done
    echo "$ut $st"
}

# "busy softirq steal total" ticks of one CPU from /proc/stat (busy = all but idle+iowait).
cpu_ticks() {
    awk -v c="cpu$1" '$1 == c {
        tot = 0; for (i = 2; i <= NF; i++) tot += $i
        print tot - $5 - $6, $8, $9, tot; exit }' /proc/stat
}

# nginx wants writable temp paths even when unused; keep them all in its own dir.
nginx_common() {
    local dir=$1
    if ((EUID == 0)); then
        echo "user $(id -un) $(id -gn);"
    fi
    cat <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() {
    local dir=$1
    cat <<EOF
    access_log off;
    server_tokens off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
EOF
}

# ---------------------------------------------------------------------------------------------
# Upstream: nginx answering 200 "ok" on LOAD_CPU.

mkdir -p "$TMP/up"
{
    nginx_common "$TMP/up"
    echo "http {"
    nginx_http_common "$TMP/up"
    cat <<EOF
    server {
        listen 127.0.0.1:$UP_PORT;
        location / {
            default_type text/plain;
            return 200 "ok\n";
        }
    }
}
EOF
} >"$TMP/up/nginx.conf"
cp "$TMP/up/nginx.conf" "$OUT/upstream-nginx.conf"
taskset -c "$LOAD_CPU" nginx -p "$TMP/up" -e "$TMP/up/error.log" -c "$TMP/up/nginx.conf" \
    >"$OUT/upstream.log" 2>&1 &
PIDS+=($!)
wait_ok "http://127.0.0.1:$UP_PORT/" "upstream nginx"

# ---------------------------------------------------------------------------------------------
# Proxies under test, each pinned to PROXY_CPU with one worker.

# levee: one pool, ten routes the request is checked against before the catch-all. Routes 4-6
# share the request's path prefix and fail on method / query / header; the regex, host and
# header routes are checked for every request (not in the path index).
cat >"$TMP/levee.toml" <<EOF
# generated by benches/load/run.sh
[server]
listen = "127.0.0.1:$LEVEE_PORT"
admin_listen = "127.0.0.1:$LEVEE_ADMIN_PORT"
threads = 1

[pools.bench]
endpoints = ["127.0.0.1:$UP_PORT"]
max_inflight = 4096
queue = { max = 4096, timeout = "1s" }
connect_timeout = "1s"
request_timeout = "10s"

[[routes]]
name = "checkout"
pool = "bench"
priority = "critical"
[routes.match]
path_prefix = "/checkout"

# The cache-hit measurement ("hit" below): the same request under /cached, answered from
# levee's route cache after the first (the upstream sends no freshness, so ttl applies).
[[routes]]
name = "cached"
pool = "bench"
[routes.match]
path_prefix = "/cached/"
[routes.cache]
max_size = "16MiB"
ttl = "1h"

[[routes]]
name = "admin"
pool = "bench"
[routes.match]
path_prefix = "/admin"
headers = { x-admin-token = { present = true } }

[[routes]]
name = "pdp"
pool = "bench"
priority = "high"
[routes.match]
path_regex = "^/p/[0-9]+\$"
methods = ["GET", "HEAD"]

[[routes]]
name = "api-write"
pool = "bench"
[routes.match]
path_prefix = "/api/"
methods = ["POST", "PUT", "PATCH", "DELETE"]

[[routes]]
name = "catalog-broad"
pool = "bench"
priority = "sheddable"
cost = 20
[routes.match]
path_prefix = "/api/catalog"
query = { q = { one_of = ["shoes", "electronics", "sale"] } }

[[routes]]
name = "catalog-internal"
pool = "bench"
[routes.match]
path_prefix = "/api/catalog"
headers = { x-internal = { equals = "1" } }

[[routes]]
name = "bots"
pool = "bench"
priority = "sheddable"
[routes.match]
headers = { user-agent = { regex = "(?i).*(bot|crawler|spider).*" } }

[[routes]]
name = "static"
pool = "bench"
[routes.match]
host = "static.example.com"

[[routes]]
name = "images"
pool = "bench"
priority = "low"
[routes.match]
path_regex = "\\\\.(png|jpe?g|gif|webp)\$"

[[routes]]
name = "health"
pool = "bench"
[routes.match]
path = "/healthz"

[[routes]]
name = "web"
pool = "bench"
EOF
cp "$TMP/levee.toml" "$OUT/levee.toml"
"$LEVEE_BIN" check -c "$TMP/levee.toml" >"$OUT/levee-check.log" 2>&1 || {
    cat "$OUT/levee-check.log" >&2
    exit 1
}
RUST_LOG=${RUST_LOG:-warn} LD_PRELOAD=$RUST_PRELOAD taskset -c "$PROXY_CPU" "$LEVEE_BIN" run \
    -c "$TMP/levee.toml" >"$OUT/levee.log" 2>&1 &
LEVEE_PID=$!
PIDS+=("$LEVEE_PID")

LD_PRELOAD=$RUST_PRELOAD taskset -c "$PROXY_CPU" "$BARE_BIN" "127.0.0.1:$BARE_PORT" \
    "127.0.0.1:$UP_PORT" 1 >"$OUT/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")

LD_PRELOAD=$RUST_PRELOAD taskset -c "$PROXY_CPU" "$BARE_BIN" "127.0.0.1:$FLOOR_PORT" \
    "127.0.0.1:$UP_PORT" 1 --hygiene >"$OUT/floor.log" 2>&1 &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")

mkdir -p "$TMP/px"
{
    nginx_common "$TMP/px"
    echo "http {"
    nginx_http_common "$TMP/px"
    cat <<EOF
    upstream backend {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$TMP/px/nginx.conf"
cp "$TMP/px/nginx.conf" "$OUT/proxy-nginx.conf"
taskset -c "$PROXY_CPU" nginx -p "$TMP/px" -e "$TMP/px/error.log" -c "$TMP/px/nginx.conf" \
    >"$OUT/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

# "hit": levee again, on a path its route cache answers (no upstream request, no pool slot).
declare -A PID_OF=([levee]=$LEVEE_PID [hit]=$LEVEE_PID [bare]=$BARE_PID [floor]=$FLOOR_PID
    [nginx]=$NGINX_PID)
declare -A PORT_OF=([levee]=$LEVEE_PORT [hit]=$LEVEE_PORT [bare]=$BARE_PORT [floor]=$FLOOR_PORT
    [nginx]=$NGINX_PORT)
declare -A PATH_OF=([levee]=$REQ_PATH [hit]=/cached$REQ_PATH [bare]=$REQ_PATH [floor]=$REQ_PATH
    [nginx]=$REQ_PATH)
read -r -a PROXIES <<<"${ONLY:-levee hit bare floor nginx}"
declare -A SEEN=()
for p in "${PROXIES[@]}"; do
    [[ -n ${PID_OF[$p]:-} ]] || { echo "run.sh: ONLY: unknown proxy '$p'" >&2; exit 2; }
    [[ -z ${SEEN[$p]:-} ]] || { echo "run.sh: ONLY: '$p' named twice" >&2; exit 2; }
    SEEN[$p]=1
done
((${#PROXIES[@]} > 0)) || { echo "run.sh: ONLY names no proxy" >&2; exit 2; }

for p in "${PROXIES[@]}"; do
    wait_ok "http://127.0.0.1:${PORT_OF[$p]}${PATH_OF[$p]}" "$p"
done

# ---------------------------------------------------------------------------------------------
# Measure.

CPU_MODEL=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $NCPU CPU(s), $CPU_MODEL"
    echo "command: DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS WARMUP=$WARMUP" \
        "${RUST_PRELOAD:+RUST_PRELOAD=$RUST_PRELOAD }${ONLY:+ONLY=\"$ONLY\" }benches/load/run.sh"
    echo "proxies on CPU $PROXY_CPU; upstream nginx + wrk on CPU $LOAD_CPU; CLK_TCK=$CLK_TCK"
    echo "wrk: taskset -c $LOAD_CPU wrk -t1 -c$CONNS -d${DURATION}s http://127.0.0.1:PORT$REQ_PATH"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "($(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed/untracked paths)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/meta.txt"

if ((WARMUP > 0)); then
    for p in "${PROXIES[@]}"; do
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" \
            "http://127.0.0.1:${PORT_OF[$p]}${PATH_OF[$p]}" >"$OUT/warmup-$p.txt" 2>&1
    done
fi

printf 'round\tproxy\trequests\treq_per_s\tcpu_ticks\tcpu_us_per_req\tnon2xx\tsock_errors\tload1\tuser_us_per_req\tsys_us_per_req\tcore_busy_pct\tcore_other_pct\tcore_steal_ticks\n' \
    >"$OUT/results.tsv"

for ((r = 1; r <= ROUNDS; r++)); do
    # rotate the order each round so no proxy always runs first (or right after another)
    order=()
    for ((i = 0; i < ${#PROXIES[@]}; i++)); do
        order+=("${PROXIES[$(((i + r - 1) % ${#PROXIES[@]}))]}")
    done
    echo
    echo "== round $r/$ROUNDS (order: ${order[*]})"
    printf '%-6s %10s %10s %12s %10s %10s %8s %6s %9s %9s\n' proxy requests req/s "cpu us/req" "user us" \
        "sys us" non2xx load1 "core busy" "not proxy"
    for p in "${order[@]}"; do
        pid=${PID_OF[$p]}
        kill -0 "$pid" 2>/dev/null || { echo "run.sh: $p (pid $pid) died; see $OUT/$p.log" >&2; exit 1; }
        load1=$(cut -d' ' -f1 /proc/loadavg)
        raw=$OUT/wrk-r$r-$p.txt
        read -r cb0 cs0 cst0 ct0 < <(cpu_ticks "$PROXY_CPU")
        read -r u0 s0 < <(proc_ticks "$pid")
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" \
            "http://127.0.0.1:${PORT_OF[$p]}${PATH_OF[$p]}" >"$raw" 2>&1
        read -r u1 s1 < <(proc_ticks "$pid")
        read -r cb1 cs1 cst1 ct1 < <(cpu_ticks "$PROXY_CPU")
        # how busy the proxy's core was, and how much of that was not the proxy (noise)
        core_busy=$(awk -v b=$((cb1 - cb0)) -v t=$((ct1 - ct0)) 'BEGIN {printf "%.0f", t ? 100 * b / t : 0}')
        core_other=$(awk -v b=$((cb1 - cb0)) -v p=$((u1 - u0 + s1 - s0)) -v t=$((ct1 - ct0)) \
            'BEGIN {o = b - p; if (o < 0) o = 0; printf "%.1f", t ? 100 * o / t : 0}')
        core_steal=$((cst1 - cst0))
        reqs=$(awk '/requests in/ {print $1; exit}' "$raw")
        rps=$(awk '/^Requests\/sec:/ {print $2; exit}' "$raw")
        non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF; exit}' "$raw")
        sockerr=$(awk '/Socket errors:/ {sub(/^ *Socket errors: */, ""); gsub(/ /, ""); print; exit}' "$raw")
        if [[ -z $reqs || -z $rps || $reqs == 0 ]]; then
            echo "run.sh: could not read wrk output for $p:" >&2
            cat "$raw" >&2
            exit 1
        fi
        uticks=$((u1 - u0))
        sticks=$((s1 - s0))
        ticks=$((uticks + sticks))
        us=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
        usr_us=$(awk -v t="$uticks" -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
        sys_us=$(awk -v t="$sticks" -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
        printf '%-6s %10s %10s %12s %10s %10s %8s %6s %9s %9s\n' "$p" "$reqs" "$rps" "$us" "$usr_us" \
            "$sys_us" "${non2xx:-0}" "$load1" "$core_busy%" "$core_other%"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$p" "$reqs" "$rps" \
            "$ticks" "$us" "${non2xx:-0}" "${sockerr:--}" "$load1" "$usr_us" "$sys_us" "$core_busy" \
            "$core_other" "$core_steal" >>"$OUT/results.tsv"
        if [[ -n $non2xx && $non2xx != 0 ]]; then
            echo "   warning: $p answered $non2xx non-2xx responses (see $raw)" >&2
        fi
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/meta.txt"

# ---------------------------------------------------------------------------------------------
# Summary: median of rounds per proxy, ratios, markdown.

awk -F'\t' -v rounds="$ROUNDS" '
function median(arr, n,    i, j, t, a) {
    for (i = 1; i <= n; i++) a[i] = arr[i]
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
NR == 1 { next }
{
    p = $2; n[p]++
    rps[p, n[p]] = $4 + 0; us[p, n[p]] = $6 + 0; uu[p, n[p]] = $10 + 0; su[p, n[p]] = $11 + 0
    rounds_rps[p] = rounds_rps[p] (rounds_rps[p] == "" ? "" : " / ") sprintf("%.0f", $4)
    rounds_us[p] = rounds_us[p] (rounds_us[p] == "" ? "" : " / ") sprintf("%.2f", $6)
    loads = loads (loads == "" ? "" : " ") $9
    others = others (others == "" ? "" : " ") $13 "%"
}
END {
    split("levee hit bare floor nginx", order, " ")
    for (k = 1; k <= 5; k++) {
        p = order[k]
        if (!n[p]) continue
        for (i = 1; i <= n[p]; i++) { a[i] = rps[p, i]; b[i] = us[p, i]; c[i] = uu[p, i]; d[i] = su[p, i] }
        mrps[p] = median(a, n[p]); mus[p] = median(b, n[p]); muu[p] = median(c, n[p]); msu[p] = median(d, n[p])
    }
    print "| proxy | req/s (median) | CPU µs/request (median) | user / sys µs (medians) | req/s per round | CPU µs/request per round |"
    print "|---|---:|---:|---:|---|---|"
    name["levee"] = "levee (routing + bulkhead + metrics)"
    name["hit"] = "levee, cache hit (route cache, no upstream)"
    name["bare"] = "bare Pingora (examples/bare_proxy.rs)"
    name["floor"] = "floor: bare + required hygiene (bare_proxy --hygiene)"
    name["nginx"] = "nginx (plain proxy_pass)"
    for (k = 1; k <= 5; k++) {
        p = order[k]
        if (!n[p]) continue
        printf "| %s | %.0f | %.2f | %.2f / %.2f | %s | %s |\n", name[p], mrps[p], mus[p], muu[p], msu[p], rounds_rps[p], rounds_us[p]
    }
    print ""
    print "| ratio (CPU per request, medians) | value | target |"
    print "|---|---:|---|"
    if (n["levee"] && n["bare"]) {
        r1 = mus["levee"] / mus["bare"]
        printf "| levee / bare Pingora | %.3fx | ≤ 1.15x: %s |\n", r1, (r1 <= 1.15 ? "met" : "NOT met")
    }
    if (n["floor"] && n["bare"])
        printf "| floor / bare Pingora | %.3fx | (the required work alone) |\n", mus["floor"] / mus["bare"]
    if (n["levee"] && n["floor"])
        printf "| levee / floor | %.3fx | (levee above the required work) |\n", mus["levee"] / mus["floor"]
    if (n["bare"] && n["nginx"])
        printf "| bare Pingora / nginx | %.3fx | (reference) |\n", mus["bare"] / mus["nginx"]
    if (n["levee"] && n["nginx"])
        printf "| levee / nginx | %.3fx | (reference) |\n", mus["levee"] / mus["nginx"]
    if (n["hit"] && n["levee"])
        printf "| levee cache hit / levee proxied | %.3fx | (reference) |\n", mus["hit"] / mus["levee"]
    print ""
    printf "1-minute load average before each run: %s  \n", loads
    printf "Busy time on the proxy core not spent in the proxy, per run: %s\n", others
}' "$OUT/results.tsv" >"$OUT/summary.md"

echo
echo "== summary (median of $ROUNDS rounds, ${DURATION}s each, -c$CONNS); raw output in $OUT"
echo
cat "$OUT/summary.md"
