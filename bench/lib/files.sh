# bench/lib/files.sh — sourced by bench/run, bench/fairness.sh and bench/instructions.sh so that all three measure
# with the same certificate chain, origin bodies and peer configs (one copy instead of three that drift).
#
#   bench_files DIR
#       ECDSA P-256 root -> intermediate -> leaf, like peerbench (a lone self-signed leaf costs chain builds):
#       DIR/chain.pem (leaf + intermediate), DIR/leaf.key, DIR/combined.pem (chain + key, HAProxy), DIR/ca.pem;
#       the origin's bodies DIR/www/16k and DIR/www/1m; DIR/policies/ with the shipped policy pack.
#       Sets BODY64 (the origin's 64-byte body, as the configs embed it). Returns non-zero if the chain is broken.
#   bench_confs DIR ORIGIN_PORT ORIGIN_TLS_PORT NGINX_PORT HAPROXY_PORT [WORKERS]
#       Fills bench/conf/{origin-nginx.conf,nginx-proxy.conf,haproxy.cfg}.in into DIR (needs bench_files first).
#       WORKERS (default 1) becomes nginx's worker_processes and HAProxy's nbthread.
#   bench_ep_tls_config DIR ORIGIN_TLS_PORT
#       Writes DIR/peerbench-tls.toml, EdgeProxy's config for row tls_64: bench/peerbench.toml plus an https:// pool
#       for the origin's TLS port (verified against DIR/ca.pem, SNI localhost), routed by Host: tls.bench as the
#       peers' configs route it.
#   bench_workdir NAME
#       Makes a fresh /tmp/NAME.XXXXXX (readable by nginx's workers, which run as nobody) and sets BENCH_DIR to it;
#       starts the caller's `pids` array empty; on exit (or INT/TERM) kills every PID in `pids`, waits for them and
#       removes the directory (fairness.sh and instructions.sh; bench/run tracks its process trees itself).
# Needs ROOT (the repository) to be set by the caller.

bench_workdir() {
    BENCH_DIR=$(mktemp -d "/tmp/$1.XXXXXX") || return 1
    chmod 755 "$BENCH_DIR"
    pids=()
    trap bench_workdir_cleanup EXIT INT TERM
}

bench_workdir_cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$BENCH_DIR"
}

bench_files() {
    local dir=$1 e="-name prime256v1 -genkey -noout"
    openssl ecparam $e -out "$dir/ca.key" && openssl ecparam $e -out "$dir/int.key" &&
        openssl ecparam $e -out "$dir/leaf.key" || return 1
    openssl req -new -x509 -key "$dir/ca.key" -out "$dir/ca.pem" -days 30 -subj "/CN=bench root" 2>/dev/null
    openssl req -new -key "$dir/int.key" -subj "/CN=bench intermediate" 2>/dev/null |
        openssl x509 -req -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 30 -out "$dir/int.pem" \
            -extfile <(printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n') \
            2>/dev/null
    openssl req -new -key "$dir/leaf.key" -subj "/CN=localhost" 2>/dev/null |
        openssl x509 -req -CA "$dir/int.pem" -CAkey "$dir/int.key" -CAcreateserial -days 30 -out "$dir/leaf.pem" \
            -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n') \
            2>/dev/null
    openssl verify -CAfile "$dir/ca.pem" -untrusted "$dir/int.pem" "$dir/leaf.pem" >/dev/null || return 1
    cat "$dir/leaf.pem" "$dir/int.pem" >"$dir/chain.pem"
    cat "$dir/chain.pem" "$dir/leaf.key" >"$dir/combined.pem"
    mkdir -p "$dir/www" "$dir/policies"
    head -c 16384 /dev/urandom | base64 -w 0 | head -c 16384 >"$dir/www/16k"
    head -c 1000000 /dev/urandom >"$dir/www/1m"
    BODY64=$(printf 'peerbench-64-byte-body-%040d\n' 0 | head -c 64)
    cp "$ROOT"/policies/*.toml "$dir/policies/"
}

bench_confs() {
    local dir=$1 origin=$2 origin_tls=$3 nginx_port=$4 haproxy_port=$5 workers=${6:-1} f
    for f in origin-nginx.conf nginx-proxy.conf haproxy.cfg; do
        sed -e "s#@RUN@#$dir#g" -e "s#@WWW@#$dir/www#g" -e "s#@CERT@#$dir/chain.pem#g" -e "s#@KEY@#$dir/leaf.key#g" \
            -e "s#@COMBINED@#$dir/combined.pem#g" -e "s#@ORIGIN_PORT@#$origin#g" -e "s#@BODY64@#${BODY64%?}\\\\n#g" \
            -e "s#@ORIGIN_TLS_PORT@#$origin_tls#g" "$ROOT/bench/conf/$f.in" >"$dir/$f" || return 1
    done
    sed -i -e "s#@PORT@#$nginx_port#g" -e "s#^worker_processes 1;#worker_processes $workers;#" "$dir/nginx-proxy.conf"
    sed -i -e "s#@PORT@#$haproxy_port#g" -e "s#^    nbthread 1#    nbthread $workers#" "$dir/haproxy.cfg"
}

bench_ep_tls_config() {
    local dir=$1 origin_tls=$2
    {
        cat "$ROOT/bench/peerbench.toml"
        printf '\n[upstreams.tlsorigin]\nservers = ["https://127.0.0.1:%s"]\n' "$origin_tls"
        printf '\n[upstreams.tlsorigin.tls]\nca_file = "%s"\nsni = "localhost"\n' "$dir/ca.pem"
        printf '\n[[routes]]\nhost = "tls.bench"\nupstream = "tlsorigin"\n'
    } >"$dir/peerbench-tls.toml"
}
