#!/usr/bin/env bash
# Move a running legacy install (docker-compose.legacy.yml: one container per service) to the
# optimized layout (docker-compose.optimized.yml: three clusters), keeping its data, and roll
# back to the legacy layout automatically if the new one does not come up healthy.
#
#   deploy/migrate.sh [--profile minimal|development|monitoring|full]
#                     [--scale compute-cluster=N] [--scale logic-cluster=N]
#                     [--backup-dir DIR] [--dry-run]
#
# Steps:
#   1. preflight: Docker Compose answers, the optimized image is built (before any downtime)
#   2. backup: stop the legacy services (Redis stays up), `bem backup` of Redis + DATA_DIR
#   3. stop the legacy layout (its volumes are kept: they are the rollback)
#   4. start the optimized Redis and `bem restore` the backup into it
#   5. start the optimized profile and wait for every healthcheck
#   6. validate: `bem health` on every port of every cluster replica, then (with the
#      gateway) `bem compat check`: every recorded request of the old platform's clients,
#      replayed from inside the gateway against the new layout (docs/migration.md)
# From step 2 on, a failing step rolls back: the optimized stack is taken down (its volumes
# kept for inspection) and the legacy stack is started again on its untouched data.
# --dry-run prints every step's commands, and the rollback's, without running anything.
# DOCKER overrides the docker command (default: docker).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER="${DOCKER:-docker}"
LEGACY=("$DOCKER" compose -f "$here/docker-compose.legacy.yml")
OPTIMIZED=("$DOCKER" compose -f "$here/docker-compose.optimized.yml")
LEGACY_SERVICES=(dag-alpha functor-types callback-engine sfde graph-runtime optimization
                 graphql ecm-ws dashboard)
declare -A PORTS=([compute-cluster]="5000 5003 5004" [logic-cluster]="5001 5002 5005"
                  [api-gateway]="8000 8765 8080")
WAIT=(--wait --wait-timeout 300)

profile=development
backup_dir="$PWD/backups"
dry_run=0
declare -A replicas=()

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
  echo "migrate.sh: $*" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || die "--profile needs a value"; profile="$2"; shift 2 ;;
    --scale)
      [ $# -ge 2 ] || die "--scale needs SERVICE=N"
      [[ "$2" =~ ^(compute-cluster|logic-cluster)=([1-9][0-9]*)$ ]] \
        || die "--scale $2: only compute-cluster=N or logic-cluster=N (N >= 1) scale"
      replicas[${BASH_REMATCH[1]}]="${BASH_REMATCH[2]}"
      shift 2 ;;
    --backup-dir) [ $# -ge 2 ] || die "--backup-dir needs a directory"; backup_dir="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

case "$profile" in
  minimal|monitoring) clusters=(compute-cluster logic-cluster) ;;
  development|full) clusters=(compute-cluster logic-cluster api-gateway) ;;
  *) die "unknown profile $profile: minimal, development, monitoring or full" ;;
esac
scale_args=()
for service in "${!replicas[@]}"; do
  scale_args+=(--scale "$service=${replicas[$service]}")
done
backup_file="$backup_dir/bem-legacy-$(date -u +%Y%m%d-%H%M%S).tar.gz"
current=""
armed=0

step() {
  current="$1"
  printf '\nstep %s\n' "$1"
}

show() {
  printf '  $'
  printf ' %q' "$@"
}

# run CMD...: print the command, then run it (not in a dry run); a failure ends the migration.
run() {
  show "$@"; printf '\n'
  [ "$dry_run" = 1 ] && return 0
  "$@" || failed "$*"
}

# run_out FILE CMD...: the same with stdout into FILE; run_in FILE CMD...: stdin from FILE.
run_out() {
  local file="$1"; shift
  show "$@"; printf ' > %q\n' "$file"
  [ "$dry_run" = 1 ] && return 0
  "$@" > "$file" || { rm -f "$file"; failed "$*"; }  # no half-written backup left behind
}

run_in() {
  local file="$1"; shift
  show "$@"; printf ' < %q\n' "$file"
  [ "$dry_run" = 1 ] && return 0
  "$@" < "$file" || failed "$*"
}

rollback_commands() {
  run "${OPTIMIZED[@]}" --profile "$profile" down --remove-orphans
  run "${LEGACY[@]}" up -d "${WAIT[@]}"
}

failed() {
  echo "migrate.sh: step $current failed: $1" >&2
  if [ "$armed" = 1 ]; then
    armed=0  # a failing rollback must not roll back again
    echo "migrate.sh: rolling back to the legacy layout" >&2
    if ( rollback_commands ); then
      echo "migrate.sh: rolled back: the legacy layout is running on its own data;" \
           "backup kept at $backup_file" >&2
    else
      echo "migrate.sh: ROLLBACK FAILED; start the legacy layout by hand:" \
           "docker compose -f $here/docker-compose.legacy.yml up -d" >&2
    fi
  fi
  exit 1
}

[ "$dry_run" = 1 ] && echo "dry run: nothing is executed"
echo "migrating legacy -> optimized, profile $profile${scale_args[*]:+ (${scale_args[*]})}"

step "1/6: preflight"
run "$DOCKER" compose version
run "${OPTIMIZED[@]}" --profile "$profile" build

step "2/6: backup (legacy services stopped, legacy Redis up)"
armed=1
run mkdir -p "$backup_dir"
run "${LEGACY[@]}" stop "${LEGACY_SERVICES[@]}"
run_out "$backup_file" "${LEGACY[@]}" run --rm --no-deps -T --entrypoint bem callback-engine \
  backup -o -
run tar -tzf "$backup_file" manifest.json

step "3/6: stop the legacy layout (volumes kept)"
run "${LEGACY[@]}" down

step "4/6: start the optimized Redis, restore the backup"
run "${OPTIMIZED[@]}" --profile "$profile" up -d "${WAIT[@]}" redis-cache
run_in "$backup_file" "${OPTIMIZED[@]}" run --rm --no-deps -T --entrypoint bem compute-cluster \
  restore -

step "5/6: start the $profile profile"
run "${OPTIMIZED[@]}" --profile "$profile" up -d "${WAIT[@]}" "${scale_args[@]}"

step "6/6: validate every port of every replica"
for service in "${clusters[@]}"; do
  for ((index = 1; index <= ${replicas[$service]:-1}; index++)); do
    for port in ${PORTS[$service]}; do
      run "${OPTIMIZED[@]}" exec -T --index "$index" "$service" \
        bem health "http://127.0.0.1:$port"
    done
  done
done
# The old clients' requests, sent where they are sent (the gateway's own ports, the backends
# at their cluster names: the containers' static addresses). Without the gateway (minimal)
# the old GraphQL and ECM clients have nothing to talk to: nothing to replay.
if [[ " ${clusters[*]} " == *" api-gateway "* ]]; then
  run "${OPTIMIZED[@]}" exec -T api-gateway bem compat check
fi
armed=0

if [ "$dry_run" = 1 ]; then
  printf '\non failure from step 2 on (rollback):\n'
  rollback_commands
  printf '\ndry run complete: nothing was executed\n'
  exit 0
fi
printf '\nmigrated: profile %s is running; legacy volumes and %s are kept for a rollback\n' \
  "$profile" "$backup_file"
