#!/usr/bin/env bash
# Start or stop a private Docker engine whose images live in a scratch folder (DOCKER_SCRATCH,
# default /tmp/bibsnet-docker), for machines where none runs. Stops only the engine it started.
#   scripts/container/dockerd.sh start|stop|status
set -euo pipefail
SCRATCH=${DOCKER_SCRATCH:-/tmp/bibsnet-docker}
PIDFILE=$SCRATCH/dockerd.pid
case "${1:-status}" in
  start)
    if docker info >/dev/null 2>&1; then echo "a Docker engine already answers"; exit 0; fi
    mkdir -p "$SCRATCH/data" "$SCRATCH/exec"
    nohup dockerd --data-root "$SCRATCH/data" --exec-root "$SCRATCH/exec" \
      --pidfile "$PIDFILE" --storage-driver overlay2 >"$SCRATCH/dockerd.log" 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && { echo "dockerd started (log: $SCRATCH/dockerd.log)"; exit 0; }; sleep 1; done
    echo "dockerd did not start; see $SCRATCH/dockerd.log" >&2; exit 1 ;;
  stop)
    if [ -f "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" && echo "dockerd stopped"; else echo "no engine started here"; fi ;;
  status)
    docker info --format '{{.ServerVersion}} {{.Driver}} {{.DockerRootDir}}' ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 64 ;;
esac
