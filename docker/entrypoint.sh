#!/bin/sh
# The gateway image's entrypoint.
#
# `up ...` runs `gateway up ...` and, once the proxy listens, publishes the CA's public
# certificate into $GATEWAY_CA_PUBLIC_DIR, the directory the agents mount read-only:
#   ca-cert.pem    the gateway's CA certificate alone (NODE_EXTRA_CA_CERTS adds it)
#   ca-bundle.pem  that certificate plus the system's CAs, as `gateway up` writes it
#                  (SSL_CERT_FILE and the other variables replace the trust store:
#                  decrypted connections show the gateway's certificates, passthrough
#                  tunnels the servers' own)
# The CA's key stays in $GATEWAY_STATE_DIR/ca, which only the gateway mounts. Pass no
# --state-dir: the state directory is $GATEWAY_STATE_DIR.
#
# Anything else runs `gateway ARGS` (`agents add ...`, `check ...`, `status`).
set -eu

if [ "${1:-}" != up ]; then
    exec gateway "$@"
fi

state=${GATEWAY_STATE_DIR:?GATEWAY_STATE_DIR must name the gateway state directory}
public=${GATEWAY_CA_PUBLIC_DIR:?GATEWAY_CA_PUBLIC_DIR must name the directory agents mount}

# gateway.json is written once the proxy listens, after ca-cert.pem; one left by a
# gateway that did not stop cleanly must not pass for this one. The published copies
# stay in place until they are replaced, so running agents never miss them.
rm -f "$state/gateway.json"

gateway "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || :' TERM INT
trap 'kill -HUP "$pid" 2>/dev/null || :' HUP

finish() {
    code=0
    wait "$pid" || code=$?
    # A trapped signal interrupts wait; wait again until the gateway has exited.
    while kill -0 "$pid" 2>/dev/null; do
        code=0
        wait "$pid" || code=$?
    done
    exit "$code"
}

while [ ! -s "$state/gateway.json" ]; do
    kill -0 "$pid" 2>/dev/null || finish
    sleep 0.2
done

publish() {  # publish NAME: write $public/NAME from stdin, atomically, mode 0644
    tmp="$public/.$1.tmp"
    cat > "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$public/$1"
}
publish ca-cert.pem < "$state/ca-cert.pem"
publish ca-bundle.pem < "$state/ca-bundle.pem"
echo "gateway: CA certificate published to $public (ca-cert.pem, ca-bundle.pem)" >&2

finish
