#!/bin/bash
# fedhealth container entrypoint: start the participant whose startup kit is mounted on /user_config.
#
# FEDHEALTH_ROLE (set by each image): server, site or admin. The kit is mounted read-only; FLARE's
# own start script (startup/sub_start.sh) sees it at /user_config, copies it into the writable
# workspace /vault/workspace/kit and runs there (FLARE 2.9's container layout). The admin console
# gets the same copy. With arguments, the admin image runs them instead of the console (a FLARE API
# script: the kit is at /vault/workspace/kit).
set -euo pipefail
KIT=/user_config
WORKSPACE=/vault/workspace
case "${FEDHEALTH_ROLE:-}" in
  server) need=fed_server.json ;;
  site) need=fed_client.json ;;
  admin) need=fed_admin.json ;;
  *) echo "fedhealth: FEDHEALTH_ROLE must be server, site or admin (got '${FEDHEALTH_ROLE:-}')" >&2; exit 2 ;;
esac
if [[ ! -f "$KIT/startup/$need" ]]; then
  echo "fedhealth: no $FEDHEALTH_ROLE startup kit on $KIT (startup/$need is missing);" \
       "mount the kit folder read-only: -v /path/to/kit:$KIT:ro" >&2
  exit 2
fi
if [[ ! -w "$WORKSPACE" ]]; then
  echo "fedhealth: $WORKSPACE is not writable by uid $(id -u); give it to that uid (chown)" >&2
  exit 2
fi
if [[ "$FEDHEALTH_ROLE" == admin ]]; then
  rm -rf "$WORKSPACE/kit"
  cp -a "$KIT" "$WORKSPACE/kit"
  chmod 700 "$WORKSPACE/kit"
  cd "$WORKSPACE/kit"
  if [[ $# -gt 0 ]]; then
    exec "$@"
  fi
  exec bash "$WORKSPACE/kit/startup/fl_admin.sh"
fi
# --once: the process runs in the foreground; the container's restart policy restarts it.
exec bash "$KIT/startup/sub_start.sh" --once
