#!/bin/sh
# The shim image's entrypoint: copy /opt/gateway (the shim directory and the real
# programs it runs, built against the agents' image) into DEST, the gateway-shim volume
# that agents mount read-only, replacing whatever an earlier build left there. It runs
# on every `docker compose up`, so the volume never holds a stale shim.
set -eu
dest=${1:?usage: publish-shim DEST}
src=/opt/gateway

rm -rf "$dest/.new"
mkdir "$dest/.new"
cp -a "$src/shim" "$src/real" "$dest/.new/"
for part in shim real; do
    rm -rf "$dest/.old-$part"
    if [ -e "$dest/$part" ]; then
        mv "$dest/$part" "$dest/.old-$part"
    fi
    mv "$dest/.new/$part" "$dest/$part"
    rm -rf "$dest/.old-$part"
done
rmdir "$dest/.new"
chmod 0755 "$dest"
echo "publish-shim: $(ls "$dest/shim" | wc -l) entries in $dest/shim, $(ls "$dest/real" | wc -l) real programs" >&2
