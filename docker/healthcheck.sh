#!/bin/sh
# The gateway image's healthcheck: healthy when
#   - the gateway answers on its admin socket with a working audit log and an accepted
#     policy (`gateway status` exits 0; 1 when the log failed or a reload was
#     rejected, 2 when no gateway answers),
#   - its proxy accepts connections at the address in gateway.json, and
#   - the CA certificate the agents trust has been published.
set -eu
state=${GATEWAY_STATE_DIR:?GATEWAY_STATE_DIR must name the gateway state directory}
public=${GATEWAY_CA_PUBLIC_DIR:?GATEWAY_CA_PUBLIC_DIR must name the directory agents mount}

gateway status >/dev/null
python3 - "$state/gateway.json" <<'PY'
import json
import socket
import sys
from urllib.parse import urlsplit

proxy = urlsplit(json.load(open(sys.argv[1]))["proxy"])
socket.create_connection((proxy.hostname, proxy.port), timeout=3).close()
PY
test -s "$public/ca-cert.pem"
test -s "$public/ca-bundle.pem"
