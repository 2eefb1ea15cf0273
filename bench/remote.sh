#!/usr/bin/env bash
# Remote-store benchmark (issue 18): oneway's first mirror and no-change pass of corpus S into
# an S3 emulator (moto, on 127.0.0.1), side by side with `rclone sync` to the same emulator.
# rclone is a comparison only, never a product dependency.
#
#   bash bench/remote.sh [--runs N] [--corpus DIR] [--no-build]
#
#   --runs N      timed runs per tool and case (default 3), alternating ours and rclone
#   --corpus DIR  where corpora live (default bench/corpus/, git-ignored)
#   --no-build    use the release oneway already in target/release
#   ONEWAY=PATH   benchmark that binary instead
#
# Method: a first mirror starts from an empty emulator (moto is restarted before each one,
# outside the timed region; it keeps nothing on disk); the no-change pass follows the first
# mirror it measures, so both tools compare S with a complete copy of it. Requests per pass
# are counted by the emulator (its access log: one line per HTTP request), the same way for
# both tools; ours are also reported by oneway itself (`--json` summary). Medians printed.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
corpus="$here/corpus"
runs=3
build=1
usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case "$1" in
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --corpus) corpus=${2:?--corpus needs a directory}; shift ;;
        --no-build) build=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "remote.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "remote.sh: --runs must be a positive number" >&2; exit 2; }

command -v moto_server >/dev/null || { echo "remote.sh: moto_server missing (pip install 'moto[server]')" >&2; exit 2; }
command -v rclone >/dev/null || { echo "remote.sh: installing rclone (comparison only)" >&2; apt-get install -y rclone >&2; }
if ((build)); then
    (cd "$repo" && cargo build --release --quiet -p oneway) >&2
fi
oneway=${ONEWAY:-$repo/target/release/oneway}
[[ -d $corpus/S && -f $corpus/S.done ]] || python3 "$here/gen_corpus.py" --dir "$corpus" S >&2
src="$corpus/S"

work=$(mktemp -d)
moto_pid=""
cleanup() { [[ -n $moto_pid ]] && kill "$moto_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_ENDPOINT_URL=$endpoint
# rclone's remote "moto", from the environment (no config file).
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other RCLONE_CONFIG_MOTO_ENV_AUTH=false
export RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=bench RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=bench-secret
export RCLONE_CONFIG_MOTO_ENDPOINT=$endpoint RCLONE_CONFIG_MOTO_REGION=us-east-1 RCLONE_CONFIG=/dev/null

start_moto() {
    [[ -n $moto_pid ]] && { kill "$moto_pid" 2>/dev/null; wait "$moto_pid" 2>/dev/null || true; }
    : > "$work/moto.log"
    moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
    moto_pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null -X PUT "$endpoint/bench" && return 0
        sleep 0.1
    done
    echo "remote.sh: moto did not start" >&2; exit 1
}
requests() { grep -c ' HTTP/1.1" ' "$work/moto.log" || true; }

# Runs "$@" and prints its wall time in seconds; its output goes to $work/out.
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$work/out" 2>"$work/err" || { echo "remote.sh: failed: $*" >&2; cat "$work/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l | xargs printf '%.3f\n'
}
ours_first=(); ours_same=(); rclone_first=(); rclone_same=()
ours_req_first=(); ours_req_same=(); rclone_req_first=(); rclone_req_same=(); ours_self=()
ours() { "$oneway" "$src" s3://bench/ours --once --json -q --log "$work/oneway.log"; }
# An AWS_CA_BUNDLE in the environment breaks rclone's plain-HTTP client to the emulator.
rcl() { env -u AWS_CA_BUNDLE rclone sync "$src" moto:bench/rclone; }
for i in $(seq "$runs"); do
    echo "run $i/$runs" >&2
    start_moto; r0=$(requests)
    ours_first+=("$(timed ours)"); r1=$(requests); ours_req_first+=($((r1 - r0)))
    ours_same+=("$(timed ours)"); r2=$(requests); ours_req_same+=($((r2 - r1)))
    ours_self+=("$(grep '"event":"summary"' "$work/out" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["requests"]["total"])')")
    start_moto; r0=$(requests)
    rclone_first+=("$(timed rcl)"); r1=$(requests); rclone_req_first+=($((r1 - r0)))
    rclone_same+=("$(timed rcl)"); r2=$(requests); rclone_req_same+=($((r2 - r1)))
    echo "  ours first ${ours_first[-1]} s (${ours_req_first[-1]} requests), no-change ${ours_same[-1]} s (${ours_req_same[-1]} requests; oneway counted ${ours_self[-1]})" >&2
    echo "  rclone first ${rclone_first[-1]} s (${rclone_req_first[-1]} requests), no-change ${rclone_same[-1]} s (${rclone_req_same[-1]} requests)" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
row() { # name ours-list rclone-list target
    local o r ratio verdict
    o=$(median $2); r=$(median $3)
    ratio=$(echo "$o / $r" | bc -l | xargs printf '%.3g')
    verdict=$(echo "$ratio <= $4" | bc -l)
    printf '| %s | %.3f s | %.3f s | %s× | ≤ %s× | %s |\n' "$1" "$o" "$r" "$ratio" "$4" "$([[ $verdict == 1 ]] && echo PASS || echo MISS)"
}
echo "| case | ours (median) | rclone sync (median) | ratio | target | result |"
echo "| --- | --- | --- | --- | --- | --- |"
row "first mirror of S to the S3 emulator" "${ours_first[*]}" "${rclone_first[*]}" 1.0
row "no-change pass of S to the S3 emulator" "${ours_same[*]}" "${rclone_same[*]}" 0.3
echo
echo "| requests per pass (emulator's log, median) | ours | rclone sync |"
echo "| --- | --- | --- |"
echo "| first mirror | $(median "${ours_req_first[@]}") | $(median "${rclone_req_first[@]}") |"
echo "| no-change pass | $(median "${ours_req_same[@]}") (oneway's own count: $(median "${ours_self[@]}")) | $(median "${rclone_req_same[@]}") |"
echo
echo "Individual runs (s): ours first ${ours_first[*]}; no-change ${ours_same[*]}; rclone first ${rclone_first[*]}; no-change ${rclone_same[*]}"
