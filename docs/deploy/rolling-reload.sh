#!/usr/bin/env bash
# Rolling bundle reload for compose.yaml: point BUNDLES_DIR/current at a new bundle, then send
# SIGHUP to one replica at a time and wait until it serves the new version before the next.
#
#   BUNDLES_DIR=$PWD/bundles docs/deploy/rolling-reload.sh v2
#
# Stops at the first replica that does not switch within RELOAD_WAIT_S seconds (a bundle that
# fails a check is refused and the replica keeps the old one): the replicas not reached yet still
# serve the old bundle; point the link back and run it again with the old folder to undo.
set -euo pipefail

new="${1:?usage: rolling-reload.sh BUNDLE_FOLDER_NAME (a folder in BUNDLES_DIR)}"
bundles="${BUNDLES_DIR:?set BUNDLES_DIR to the folder compose.yaml mounts}"
wait_s="${RELOAD_WAIT_S:-120}"
compose=(docker compose -f "$(dirname "$0")/compose.yaml")
version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["bundle_version"])' \
  "$bundles/$new/manifest.json")

# switch the link atomically: a replica that restarts meanwhile sees the old or the new bundle
ln -sfn "$new" "$bundles/current.tmp"
mv -T "$bundles/current.tmp" "$bundles/current"

# a replica's bundle version, asked inside its container (replicas publish no port)
ready='import json, urllib.request as u; r = u.urlopen("http://127.0.0.1:8000/health/ready", timeout=2); print(json.load(r)["bundle_version"])'
serving_version() {
  docker exec "$1" python -c "$ready" 2>/dev/null || true
}

for container in $("${compose[@]}" ps -q uservec); do
  docker kill --signal HUP "$container" >/dev/null
  serving=""
  for _ in $(seq "$wait_s"); do
    serving=$(serving_version "$container")
    [ "$serving" = "$version" ] && break
    sleep 1
  done
  if [ "$serving" != "$version" ]; then
    echo "replica $container still serves '$serving' after ${wait_s}s, not $version;" \
      "its log says why: docker logs $container" >&2
    exit 1
  fi
  echo "replica $container serves $version"
done
