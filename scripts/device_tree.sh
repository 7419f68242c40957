#!/usr/bin/env bash
# Make this checkout small enough to travel to a lent GPU machine, and put it back.
#
# A GPU machine gets a copy of the working tree (tracked files and untracked files git does not
# ignore) of at most 64 MiB.  This repository tracks ~90 MB of shipped weights and ~110 MB of
# resume checkpoints, which training there does not need: `slim` takes them out of git's index
# (not out of HEAD, nor off the disk) and ignores them locally, so that only the code travels
# (~10 MB) plus what the device call names in `carry` (the data subset, the one model or
# checkpoint to start from).  `restore` puts the index back as it was.  Run `restore` right
# after the device call, and never commit while slim (the commit would delete the weights).
#
#   scripts/device_tree.sh slim              # then: the device call, carry=[".device", ...]
#   scripts/device_tree.sh size [PATH ...]   # bytes that would travel, with the carried PATHs
#   scripts/device_tree.sh restore
set -euo pipefail
cd "$(dirname "$0")/.."
MARK="# dnaimg scripts/device_tree.sh slim (remove with: scripts/device_tree.sh restore)"
EXCLUDE=$(git rev-parse --git-path info/exclude)
HEAVY=(checkpoints 'dnaimg/zoo/models/*.safetensors')
LIMIT=$((64 * 1024 * 1024))

travelling() {       # bytes: tracked + untracked-not-ignored files (those on disk), then the carried paths
  local t c=0
  t=$({ git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null || true; } \
      | awk '{s += $1} END {print s + 0}')
  if (($#)); then c=$(du -cb "$@" | tail -1 | cut -f1); fi
  echo "tree $((t / 1048576)) MiB + carried $((c / 1048576)) MiB = $(((t + c) / 1048576)) MiB (limit 64 MiB)"
  ((t + c <= LIMIT))
}

case "${1:-}" in
  slim)
    if grep -qF "$MARK" "$EXCLUDE" 2>/dev/null; then echo "device_tree: already slim" >&2; exit 1; fi
    if ! git diff --cached --quiet -- checkpoints dnaimg/zoo/models; then
      echo "device_tree: changes to checkpoints/ or dnaimg/zoo/models/ are staged; commit or unstage them first" >&2
      exit 1
    fi
    git rm -r -q --cached --ignore-unmatch -- "${HEAVY[@]}"
    mkdir -p "$(dirname "$EXCLUDE")"
    if [[ -s "$EXCLUDE" && -n "$(tail -c 1 "$EXCLUDE")" ]]; then echo >> "$EXCLUDE"; fi   # end its last line first
    printf '%s\n/checkpoints/\n/dnaimg/zoo/models/*.safetensors\n' "$MARK" >> "$EXCLUDE"
    travelling || { echo "device_tree: still over the limit" >&2; exit 1; }
    ;;
  restore)
    git reset -q -- checkpoints dnaimg/zoo/models
    if [[ -f "$EXCLUDE" ]]; then
      awk -v m="$MARK" '$0 == m {skip = 2; next} skip > 0 {skip--; next} {print}' "$EXCLUDE" > "$EXCLUDE.tmp"
      mv "$EXCLUDE.tmp" "$EXCLUDE"
    fi
    git status --short -- checkpoints dnaimg/zoo/models
    ;;
  size)
    shift
    travelling "$@"
    ;;
  *)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
