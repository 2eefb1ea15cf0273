#!/usr/bin/env bash
# Benchmark runner for SPEC section 6: runs oneway/twoway and their anchors (rsync, unison,
# openssl) side by side on generated corpora and prints one table of medians.
#
#   bash bench/run.sh [--quick] [--rows 1,2,5] [--runs N] [--corpus DIR] [--no-build]
#
#   --quick       3 runs per tool and only the S rows (1 2 4 5 6 9 10) unless --rows is given
#   --rows LIST   comma-separated rows to run (default: all, 1-15; 11 is watch mode, which also
#                 needs M for its peak-memory figure, and takes about 3 minutes; 12 is
#                 --checksum on S and on K100, the 100,000-file tree; 13 copies a sparse file;
#                 14 is the versioned pass of row 9 on K100; 15 is the scale curve: peak RSS
#                 and time of first and no-change passes on K100, K200 and K400, ours and
#                 rsync/unison, one run each, about 25 minutes, plotted to CORPUS/scale-rss.svg
#                 (SCALE_SVG=PATH elsewhere) with its points beside it in a .tsv)
#   --runs N      timed runs per tool and row (default 5; SPEC asks for at least 5)
#   --corpus DIR  where corpora live (default bench/corpus/, git-ignored)
#   --no-build    use the release binaries already in target/release
#   --no-wait     do not wait for the previous run's clean-up to age (see "Scratch space")
#   ONEWAY=PATH, TWOWAY=PATH in the environment: benchmark those binaries instead
#
# Method: every timed run starts from the same state, prepared outside the timed region
# (fresh or restored target, `sync` so that no earlier run's write-back lands in this one).
# Ours and the anchor alternate (ours, anchor, ours, anchor, ...) after one untimed warm-up
# round each, so machine noise (other builds on this host) hits both alike; medians are
# reported. The page cache is warm: the corpora are read in the warm-up round.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
corpus="$here/corpus"
runs=5
rows=""
quick=0
build=1
wait_cleanup=1

usage() { sed -n '2,/^# Method/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case "$1" in
        --quick) quick=1 ;;
        --rows) rows=${2:?--rows needs a list}; shift ;;
        --rows=*) rows=${1#*=} ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --runs=*) runs=${1#*=} ;;
        --corpus) corpus=${2:?--corpus needs a directory}; shift ;;
        --corpus=*) corpus=${1#*=} ;;
        --no-build) build=0 ;;
        --no-wait) wait_cleanup=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if ((quick)); then
    [[ -n $rows ]] || rows="1,2,4,5,6,9,10"
    [[ $runs == 5 ]] && runs=3
fi
[[ -n $rows ]] || rows="1,2,3,4,5,6,7,8,9,10,11,12,13,14,15"
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --runs must be a positive number" >&2; exit 2; }
[[ $rows =~ ^([1-9]|1[0-5])(,([1-9]|1[0-5]))*$ ]] || { echo "run.sh: --rows takes numbers 1-15 separated by commas" >&2; exit 2; }
want() { [[ ",$rows," == *",$1,"* ]]; }

say() { printf '[bench] %s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------------------------
need_pkgs=()
command -v rsync >/dev/null || need_pkgs+=(rsync)
command -v unison >/dev/null || need_pkgs+=(unison)
command -v hyperfine >/dev/null || need_pkgs+=(hyperfine)
command -v openssl >/dev/null || need_pkgs+=(openssl)
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
if ((${#need_pkgs[@]})); then
    say "installing ${need_pkgs[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >/dev/null 2>&1; then
        apt-get update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >/dev/null
    fi
fi

# --- binaries --------------------------------------------------------------------------------
if ((build)); then
    say "building release binaries"
    # --bins next to --example: with --example alone cargo builds only the example.
    (cd "$repo" && cargo build --release -q -p oneway -p twoway -p synccore --bins --example sha256sum)
fi
target_dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') || target_dir="$repo/target"
# ONEWAY / TWOWAY in the environment override the binaries (e.g. a build of another branch).
oneway=${ONEWAY:-"$target_dir/release/oneway"}
twoway=${TWOWAY:-"$target_dir/release/twoway"}
sha256sum_ex="$target_dir/release/examples/sha256sum"
for b in "$oneway" "$twoway" "$sha256sum_ex"; do
    [[ -x $b ]] || { echo "run.sh: missing $b (drop --no-build)" >&2; exit 1; }
done

# --- corpora ---------------------------------------------------------------------------------
mkdir -p "$corpus"
corpus=$(cd "$corpus" && pwd)
need_corpora=()
if want 1 || want 2 || want 4 || want 5 || want 6 || want 9 || want 10 || want 11 || want 12; then need_corpora+=(S); fi
if want 3 || want 8 || want 11; then need_corpora+=(M); fi
if want 7; then need_corpora+=(L); fi
if want 12 || want 14; then need_corpora+=(K100); fi
if want 15; then need_corpora+=(K100 K200 K400); fi
python3 "$here/gen_corpus.py" --dir "$corpus" "${need_corpora[@]}"
S="$corpus/S"
M="$corpus/M"
L="$corpus/L"
K100="$corpus/K100"
count_files() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["files"])' "$1"; }

# Scratch space on the corpus's file system (same disk as a real backup would use).
#
# Nothing is deleted until the table is printed: every timed run writes into a fresh directory.
# On ext4 without a journal (as on the machine this was written on) the inode allocator skips
# inodes freed in the last 60 s (360 s while their inode-table block is dirty), checking each one
# by a buffer lookup, from the start of the group on every create; deleting the previous run's
# 20,000 files right before the next run made file creation 2-3x slower for both tools and
# turned the comparison into noise. Likewise the start of a run waits until the previous run's
# clean-up is 6 minutes old (see .last-cleanup) unless --no-wait.
work=$(mktemp -d "$corpus/.run.XXXXXX")
cleanup() {
    say "removing scratch trees (deferred until after the table)"
    [[ -n ${BENCH_KEEP:-} ]] || rm -rf "$work"
    date +%s >"$corpus/.last-cleanup"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
runlog="$work/commands.log"
if [[ -r "$corpus/.last-cleanup" ]]; then
    age=$(($(date +%s) - $(cat "$corpus/.last-cleanup")))
    if ((age < 360)); then
        if ((wait_cleanup)); then
            say "previous run's clean-up was ${age} s ago: waiting $((360 - age)) s for freed inodes to age (--no-wait skips)"
            sleep $((360 - age))
        else
            say "warning: previous run's clean-up was ${age} s ago; file creation may be slowed (both tools)"
        fi
    fi
fi
started=$SECONDS
seq=0
# `fresh NAME` sets FRESH to a directory path not used before in this run.
fresh() { seq=$((seq + 1)); FRESH="$work/$1.$seq"; }

# --- timing ----------------------------------------------------------------------------------
# `timed CMD...` runs CMD with output to $runlog and sets T (seconds, microsecond resolution).
timed() {
    local t0 t1
    t0=$EPOCHREALTIME
    if ! "$@" >>"$runlog" 2>&1; then
        echo "run.sh: command failed: $*" >&2
        tail -n 20 "$runlog" >&2
        exit 1
    fi
    t1=$EPOCHREALTIME
    T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# `alternate PREP_OURS RUN_OURS PREP_ANCHOR RUN_ANCHOR` (function names): one untimed warm-up
# round, then $runs alternating timed rounds. Sets OURS and ANCHOR (medians, seconds) and
# OURS_ALL / ANCHOR_ALL (every timed run).
alternate() {
    local po=$1 ro=$2 pa=$3 ra=$4 i
    local -a to=() ta=()
    for ((i = 0; i <= runs; i++)); do
        $po; timed $ro
        ((i == 0)) || to+=("$T")
        $pa; timed $ra
        ((i == 0)) || ta+=("$T")
    done
    OURS=$(median "${to[@]}")
    ANCHOR=$(median "${ta[@]}")
    OURS_ALL="${to[*]}"
    ANCHOR_ALL="${ta[*]}"
    say "  ours:   ${OURS_ALL}"
    say "  anchor: ${ANCHOR_ALL}"
}

# --- table -----------------------------------------------------------------------------------
table=()
# add_row CASE OURS ANCHOR RATIO TARGET VERDICT
add_row() { table+=("$(printf '| %s | %s | %s | %s | %s | %s |' "$@")"); }
# time_row CASE TARGET_RATIO: ratio ours/anchor, PASS when <= target.
time_row() {
    local name=$1 target=$2 ratio verdict
    ratio=$(awk -v o="$OURS" -v a="$ANCHOR" 'BEGIN { printf "%.2f", o / a }')
    verdict=$(awk -v o="$OURS" -v a="$ANCHOR" -v t="$target" 'BEGIN { print (o / a <= t) ? "PASS" : "MISS" }')
    add_row "$name" "$(printf '%.3f s' "$OURS")" "$(printf '%.3f s' "$ANCHOR")" "${ratio}×" "≤ ${target}×" "$verdict"
    say "  -> ratio ${ratio} (target <= ${target}): $verdict"
}

sync_fs() { sync; }
oneway_q() { "$oneway" "$@" --once -q --log "$work/oneway.log"; }
twoway_q() { "$twoway" "$@" --once -q --no-recovery --log "$work/twoway.log"; }
unison_q() {
    # $1 = home (fresh per independent run so that archives never leak between runs)
    local home=$1; shift
    HOME="$home" UNISONLOCALHOSTNAME=bench-host unison "$@" -batch -auto -silent -confirmbigdel=false
}

# --- rows ------------------------------------------------------------------------------------
s_files=$(count_files "$corpus/S.done" 2>/dev/null || echo 0)
S_OURS="" S_RSYNC="" FIRST_MIRROR=""

if want 1; then
    say "row 1: oneway first mirror of S ($s_files files) vs rsync -a"
    r1_prep_ours() { fresh s_ours; S_OURS=$FRESH; : >"$work/oneway.log"; sync_fs; }
    r1_ours() { oneway_q "$S" "$S_OURS"; }
    r1_prep_rsync() { fresh s_rsync; S_RSYNC=$FRESH; sync_fs; }
    r1_rsync() { rsync -a "$S/" "$S_RSYNC/"; }
    alternate r1_prep_ours r1_ours r1_prep_rsync r1_rsync
    FIRST_MIRROR=$OURS
    time_row "1. oneway first mirror of S vs \`rsync -a\`" 0.8
fi

if want 2; then
    say "row 2: oneway no-change pass over S vs rsync -a --delete"
    # The mirrors the last runs of row 1 made, else fresh ones.
    if [[ -z $S_OURS ]]; then
        fresh s_ours; S_OURS=$FRESH; oneway_q "$S" "$S_OURS" >>"$runlog" 2>&1
        fresh s_rsync; S_RSYNC=$FRESH; rsync -a "$S/" "$S_RSYNC/"
    fi
    r2_prep() { : >"$work/oneway.log"; }
    r2_ours() { oneway_q "$S" "$S_OURS"; }
    r2_rsync() { rsync -a --delete "$S/" "$S_RSYNC/"; }
    alternate r2_prep r2_ours r2_prep r2_rsync
    time_row "2. oneway no-change pass, S vs \`rsync -a --delete\`" 0.5
fi

m_files=0
if want 3 || want 8; then
    m_files=$(count_files "$corpus/M.done")
    say "rows 3/8: first mirrors of M ($m_files files), ours under /usr/bin/time -v"
    sync_fs
    /usr/bin/time -v -o "$work/m_first.time" "$oneway" "$M" "$work/m_ours" --once -q --log "$work/oneway.log"
    rsync -a "$M/" "$work/m_rsync/"
    sync_fs
fi

if want 3; then
    say "row 3: oneway no-change pass over M vs rsync -a --delete"
    r3_prep() { : >"$work/oneway.log"; }
    r3_ours() { oneway_q "$M" "$work/m_ours"; }
    r3_rsync() { rsync -a --delete "$M/" "$work/m_rsync/"; }
    alternate r3_prep r3_ours r3_prep r3_rsync
    time_row "3. oneway no-change pass, M vs \`rsync -a --delete\`" 0.5
fi

if want 4; then
    say "row 4: oneway pass after 1 % of S changed vs rsync -a --delete"
    cp -a "$S" "$work/s_changed"
    change=$(python3 "$here/gen_corpus.py" change "$work/s_changed")
    say "  change: $change"
    # The pre-change mirror every timed run starts from: each run gets a hard-linked copy of
    # it (cp -al), so preparing a run neither copies data nor frees inodes; a replaced file
    # only drops one link.
    rsync -a "$S/" "$work/s_pristine/"
    r4_prep_ours() { fresh r4_ours; R4_OURS=$FRESH; cp -al "$work/s_pristine" "$R4_OURS"; : >"$work/oneway.log"; sync_fs; }
    r4_ours() { oneway_q "$work/s_changed" "$R4_OURS"; }
    r4_prep_rsync() { fresh r4_rsync; R4_RSYNC=$FRESH; cp -al "$work/s_pristine" "$R4_RSYNC"; sync_fs; }
    r4_rsync() { rsync -a --delete "$work/s_changed/" "$R4_RSYNC/"; }
    alternate r4_prep_ours r4_ours r4_prep_rsync r4_rsync
    time_row "4. oneway pass after 1 % of S changed vs \`rsync -a --delete\`" 0.8
fi

TW_B="" UN_B=""
if want 5 || want 6; then
    # A copy of S as side A, so that neither tool can touch the corpus.
    cp -a "$S" "$work/a"
fi

if want 5; then
    say "row 5: twoway first pass (A = S, B empty) vs unison first sync"
    r5_prep_ours() {
        fresh tw_b; TW_B=$FRESH; fresh tw_home; TW_HOME=$FRESH
        mkdir "$TW_B"; : >"$work/twoway.log"; sync_fs
    }
    r5_ours() { twoway_q "$work/a" "$TW_B" --home "$TW_HOME"; }
    r5_prep_unison() {
        fresh un_b; UN_B=$FRESH; fresh un_home; UN_HOME=$FRESH
        mkdir "$UN_B" "$UN_HOME"; sync_fs
    }
    r5_unison() { unison_q "$UN_HOME" "$work/a" "$UN_B"; }
    alternate r5_prep_ours r5_ours r5_prep_unison r5_unison
    time_row "5. twoway first pass (A = S, B empty) vs \`unison -batch\`" 0.5
fi

if want 6; then
    say "row 6: twoway no-change pass vs unison no-change sync"
    # The pairs the last runs of row 5 synced, else fresh ones.
    if [[ -z $TW_B ]]; then
        fresh tw_b; TW_B=$FRESH; fresh tw_home; TW_HOME=$FRESH; mkdir "$TW_B"
        twoway_q "$work/a" "$TW_B" --home "$TW_HOME" >>"$runlog" 2>&1
        fresh un_b; UN_B=$FRESH; fresh un_home; UN_HOME=$FRESH; mkdir "$UN_B" "$UN_HOME"
        unison_q "$UN_HOME" "$work/a" "$UN_B" >>"$runlog" 2>&1
    fi
    r6_prep() { : >"$work/twoway.log"; }
    r6_ours() { twoway_q "$work/a" "$TW_B" --home "$TW_HOME"; }
    r6_unison() { unison_q "$UN_HOME" "$work/a" "$UN_B"; }
    alternate r6_prep r6_ours r6_prep r6_unison
    time_row "6. twoway no-change pass vs \`unison -batch\` no-change" 0.5
fi

if want 7; then
    say "row 7: file checksum of L (8 x 64 MiB) vs openssl dgst -sha256"
    l_files=("$L"/*)
    l_bytes=$(stat -c %s "${l_files[@]}" | awk '{ s += $1 } END { print s }')
    r7_prep() { :; }
    r7_ours() { "$sha256sum_ex" "${l_files[@]}"; }
    r7_openssl() { openssl dgst -sha256 "${l_files[@]}"; }
    alternate r7_prep r7_ours r7_prep r7_openssl
    # Sanity: both tools agree on the digests.
    ours_sums=$("$sha256sum_ex" "${l_files[@]}" | awk '{ print $1 }')
    ssl_sums=$(openssl dgst -sha256 -r "${l_files[@]}" | awk '{ print $1 }')
    [[ $ours_sums == "$ssl_sums" ]] || { echo "run.sh: digests differ from openssl's" >&2; exit 1; }
    mbps() { awk -v b="$l_bytes" -v t="$1" 'BEGIN { printf "%.0f MB/s", b / t / 1e6 }'; }
    ratio=$(awk -v o="$OURS" -v a="$ANCHOR" 'BEGIN { printf "%.2f", a / o }')
    verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.9) ? "PASS" : "MISS" }')
    add_row "7. file checksum of L, throughput vs \`openssl dgst -sha256\`" \
        "$(printf '%.3f s (%s)' "$OURS" "$(mbps "$OURS")")" \
        "$(printf '%.3f s (%s)' "$ANCHOR" "$(mbps "$ANCHOR")")" "${ratio}×" "≥ 0.9×" "$verdict"
    say "  -> throughput ratio $ratio (target >= 0.9): $verdict"
fi

if want 8; then
    say "row 8: peak memory of oneway passes over M"
    /usr/bin/time -v -o "$work/m_nochange.time" "$oneway" "$M" "$work/m_ours" --once -q --log "$work/oneway.log"
    /usr/bin/time -v -o "$work/m_rsync.time" rsync -a --delete "$M/" "$work/m_rsync/"
    maxrss() { awk -F': ' '/Maximum resident set size/ { print $2 * 1024 }' "$1"; }
    for kind in first nochange; do
        rss=$(maxrss "$work/m_$kind.time")
        per=$(awk -v r="$rss" -v n="$m_files" 'BEGIN { printf "%.0f", r / n }')
        verdict=$(awk -v p="$per" 'BEGIN { print (p <= 300) ? "PASS" : "MISS" }')
        label=$([[ $kind == first ]] && echo "first mirror" || echo "no-change pass")
        num=$([[ $kind == first ]] && echo 8 || echo 8b)
        anchor="—"
        if [[ $kind == nochange ]]; then
            anchor=$(awk -v r="$(maxrss "$work/m_rsync.time")" -v n="$m_files" \
                'BEGIN { printf "%.0f B/file (%.0f MiB, largest rsync process)", r / n, r / 1048576 }')
        fi
        add_row "$num. peak memory of a oneway pass over M, $label" \
            "$(awk -v r="$rss" -v p="$per" 'BEGIN { printf "%d B/file (%.0f MiB)", p, r / 1048576 }')" \
            "$anchor" "—" "≤ 300 B/file" "$verdict"
        say "  -> $label: $per bytes per file: $verdict"
    done
fi

# `versioned_rows TREE NAME LABEL`: a first versioned pass of a copy of TREE, 1 % of its files
# changed (gen_corpus.py change), then the timed second pass, which rotates. Sets V_CHANGED
# (the bytes of the changed files' new content), V_FILES (how many), V_COPIED (the bytes the
# pass reports copying), V_WRITTEN (bytes written into files under the versions root,
# measured from outside: a file whose inode did not exist before the pass counts whole, one
# that did by what it grew, so an appended journal counts its new lines and a hard link to an
# old inode nothing; directory entries are not file data) and T (the pass's seconds).
versioned_rows() {
    local tree=$1 name=$2 change
    cp -a "$tree" "$work/${name}_src"
    "$oneway" "$work/${name}_src" "$work/${name}_root" --versioned --once -q --log "$work/${name}1.log" >>"$runlog" 2>&1
    change=$(python3 "$here/gen_corpus.py" change "$work/${name}_src")
    say "  change: $change"
    V_CHANGED=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bytes_changed"])' "$change")
    V_FILES=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["files"])' "$change")
    sync_fs
    inodes() { find "$work/${name}_root" -type f -printf '%i %s\n' | sort -u; }
    inodes >"$work/${name}_before"
    timed "$oneway" "$work/${name}_src" "$work/${name}_root" --versioned --once -q --log "$work/${name}2.log"
    inodes >"$work/${name}_after"
    V_WRITTEN=$(awk 'NR == FNR { old[$1] = $2; next }
        !($1 in old) { s += $2; next } $2 > old[$1] { s += $2 - old[$1] } END { print s + 0 }' \
        "$work/${name}_before" "$work/${name}_after")
    V_COPIED=$(grep -o '[0-9]* bytes copied' "$work/${name}2.log" | awk '{ s += $1 } END { print s + 0 }')
    grep -q 'bytes copied' "$work/${name}2.log" || V_COPIED=""
    say "  pass line: $(grep -o 'rotated;.*' "$work/${name}2.log" || echo none)"
}

# `written_row LABEL`: the row for V_WRITTEN against issue 17's target, 1.1 x the changed
# bytes plus 256 bytes per changed file.
written_row() {
    local label=$1 budget ratio verdict
    budget=$(awk -v c="$V_CHANGED" -v f="$V_FILES" 'BEGIN { printf "%d", c * 1.1 + 256 * f }')
    ratio=$(awk -v w="$V_WRITTEN" -v c="$V_CHANGED" 'BEGIN { printf "%.2f", w / c }')
    verdict=$(awk -v w="$V_WRITTEN" -v b="$budget" 'BEGIN { print (w <= b) ? "PASS" : "MISS" }')
    [[ -n $V_COPIED ]] || verdict="ERROR (no pass summary in the log)"
    add_row "$label" "$(printf '%d B' "$V_WRITTEN")" "$(printf '%d B changed in %d files' "$V_CHANGED" "$V_FILES")" \
        "${ratio}×" "≤ 1.1× changed + 256 B per changed file ($budget B)" "$verdict"
    say "  -> $V_WRITTEN bytes written vs $V_CHANGED changed in $V_FILES files (budget $budget): $verdict"
}

if want 9; then
    say "row 9: versioned pass after 1 % of S changed: bytes written vs bytes changed"
    versioned_rows "$S" v
    ratio=$(awk -v c="$V_COPIED" -v d="$V_CHANGED" 'BEGIN { printf "%.2f", c / d }')
    verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.1) ? "PASS" : "MISS" }')
    [[ -n $V_COPIED ]] || verdict="ERROR (no pass summary in the log)"
    add_row "9. versioned pass after 1 % changed, bytes the pass reports copying" \
        "$(printf '%d B copied (%.3f s)' "${V_COPIED:-0}" "$T")" "$(printf '%d B changed' "$V_CHANGED")" \
        "${ratio}×" "≤ 1.1×" "$verdict"
    say "  -> reported: ${V_COPIED:-0} bytes vs $V_CHANGED changed, ratio $ratio: $verdict"
    written_row "9b. versioned pass after 1 % of S changed, all bytes written under the versions root (data + manifest + journal)"
fi

if want 14; then
    say "row 14: versioned pass after 1 % of K100 (100,000 small files) changed: bytes written"
    versioned_rows "$K100" k
    written_row "14. versioned pass after 1 % of K100 (100,000 small files) changed, all bytes written under the versions root ($(printf '%.3f s' "$T"))"
fi

# `move_half DIR`: the renames issue's change: half of DIR's top-level directories moved
# under a new parent `moved/`, and one file of the other half renamed.
move_half() {
    local dir=$1 all half last first
    mapfile -t all < <(cd "$dir" && find . -mindepth 1 -maxdepth 1 -type d -name 'd*' -printf '%f\n' | sort)
    half=$((${#all[@]} / 2))
    mkdir "$dir/moved"
    (cd "$dir" && mv "${all[@]:0:half}" moved/)
    last=${all[${#all[@]} - 1]}
    first=$(cd "$dir/$last" && find . -maxdepth 1 -type f -printf '%f\n' | sort | head -n 1)
    mv "$dir/$last/$first" "$dir/$last/renamed-$first"
}

if want 10; then
    say "row 10: oneway pass after moving half of S's directories vs rsync -a --delete"
    cp -a "$S" "$work/m_src"
    rsync -a "$S/" "$work/m_pristine/"
    move_half "$work/m_src"
    r10_prep_ours() { fresh r10_ours; R10_OURS=$FRESH; cp -al "$work/m_pristine" "$R10_OURS"; : >"$work/oneway.log"; sync_fs; }
    r10_ours() { oneway_q "$work/m_src" "$R10_OURS"; }
    r10_prep_rsync() { fresh r10_rsync; R10_RSYNC=$FRESH; cp -al "$work/m_pristine" "$R10_RSYNC"; sync_fs; }
    r10_rsync() { rsync -a --delete "$work/m_src/" "$R10_RSYNC/"; }
    alternate r10_prep_ours r10_ours r10_prep_rsync r10_rsync
    moved=$OURS
    copied=$(grep -o '[0-9]* bytes copied' "$work/oneway.log" | awk '{ s += $1 } END { print s + 0 }')
    time_row "10. oneway pass after moving half of S's directories vs \`rsync -a --delete\`" 0.1
    if [[ -z $FIRST_MIRROR ]]; then
        fresh r10_first; sync_fs
        timed oneway_q "$S" "$FRESH"
        FIRST_MIRROR=$T
    fi
    OURS=$moved ANCHOR=$FIRST_MIRROR
    time_row "10b. the same pass vs oneway's first mirror of S" 0.1
    verdict=$( ((copied == 0)) && echo PASS || echo MISS)
    add_row "10c. the same pass, bytes copied" "$copied B" "—" "—" "0 B" "$verdict"

    say "row 10d: twoway pass after the same moves on side A vs unison"
    r10_prep_tw() {
        fresh r10_a; R10_A=$FRESH; fresh r10_b; R10_B=$FRESH; fresh r10_home; R10_HOME=$FRESH
        cp -al "$S" "$R10_A"; mkdir "$R10_B"
        twoway_q "$R10_A" "$R10_B" --home "$R10_HOME" >>"$runlog" 2>&1
        move_half "$R10_A"; : >"$work/twoway.log"; sync_fs
    }
    r10_tw() { twoway_q "$R10_A" "$R10_B" --home "$R10_HOME"; }
    r10_prep_un() {
        fresh r10_ua; R10_UA=$FRESH; fresh r10_ub; R10_UB=$FRESH; fresh r10_uhome; R10_UHOME=$FRESH
        cp -al "$S" "$R10_UA"; mkdir "$R10_UB" "$R10_UHOME"
        unison_q "$R10_UHOME" "$R10_UA" "$R10_UB" >>"$runlog" 2>&1
        move_half "$R10_UA"; sync_fs
    }
    r10_un() { unison_q "$R10_UHOME" "$R10_UA" "$R10_UB"; }
    alternate r10_prep_tw r10_tw r10_prep_un r10_un
    tw_copied=$(grep -o '[0-9]* bytes copied' "$work/twoway.log" | awk '{ s += $1 } END { print s + 0 }')
    time_row "10d. twoway pass after the same moves on A vs \`unison -batch\` ($tw_copied B copied)" 0.1
fi

if want 11; then
    say "row 11: watch mode: latency of a change, idle CPU, peak memory of a watcher of M"
    python3 "$here/watch.py" --oneway "$oneway" --twoway "$twoway" --tree "$S" --large "$M" \
        --edits 20 --idle 60 --work "$work" >"$work/watch.jsonl"
    field() { python3 -c 'import json,sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["case"] == sys.argv[2]: print(e[sys.argv[3]])' "$work/watch.jsonl" "$1" "$2"; }
    for prog in oneway twoway; do
        p95=$(field "$prog --watch latency" p95_s)
        med=$(field "$prog --watch latency" median_s)
        verdict=$(awk -v p="$p95" 'BEGIN { print (p <= 1.0) ? "PASS" : "MISS" }')
        add_row "11. $prog --watch: a write on S reaches the other side (median / p95 of 20)" \
            "$(printf '%.3f s / %.3f s' "$med" "$p95")" "—" "—" "p95 ≤ 1 s" "$verdict"
        cpu=$(field "$prog --watch idle CPU" cpu_s)
        verdict=$(awk -v c="$cpu" 'BEGIN { print (c <= 0.6) ? "PASS" : "MISS" }')
        add_row "11. $prog --watch: CPU over 60 idle seconds" "$(printf '%.3f s' "$cpu")" "—" "—" "< 0.1 s per 10 s" "$verdict"
    done
    rss=$(field "oneway --watch peak RSS on the large tree" peak_rss_kib)
    add_row "11. oneway --watch of M: peak RSS" "$((rss / 1024)) MiB" "—" "—" "report" "—"
fi

if want 12; then
    say "row 12: oneway --checksum no-change pass vs rsync -ac --delete, on S and on K100 (100,000 files)"
    # --checksum reads every file of equal size on both sides: ours compares the bytes (no
    # hash, on both cores), rsync hashes both sides (its fast non-cryptographic checksum).
    for tree in S K100; do
        src=$S; [[ $tree == K100 ]] && src=$K100
        fresh "r12_ours_$tree"; R12_OURS=$FRESH
        fresh "r12_rsync_$tree"; R12_RSYNC=$FRESH
        oneway_q "$src" "$R12_OURS" >>"$runlog" 2>&1
        rsync -a "$src/" "$R12_RSYNC/"
        sync_fs
        r12_prep() { : >"$work/oneway.log"; }
        r12_ours() { oneway_q "$R12_SRC" "$R12_OURS" --checksum; }
        r12_rsync() { rsync -ac --delete "$R12_SRC/" "$R12_RSYNC/"; }
        R12_SRC=$src
        alternate r12_prep r12_ours r12_prep r12_rsync
        grep -q ' update "\| copy "' "$work/oneway.log" && { echo "run.sh: row 12's pass copied something" >&2; exit 1; }
        files=$(count_files "$corpus/$tree.done")
        time_row "12$([[ $tree == K100 ]] && echo b). oneway --checksum no-change pass, $tree ($files files) vs \`rsync -ac --delete\`" 0.5
    done
fi

if want 13; then
    say "row 13: copy of a sparse file (2 GiB holding 1 MiB of data) vs cp --sparse=always"
    # The image: 16 blocks of 64 KiB of random data spread over 2 GiB of holes.
    mkdir "$work/sparse_src"
    img="$work/sparse_src/disk.img"
    truncate -s 2G "$img"
    for i in $(seq 0 15); do
        dd if=/dev/urandom of="$img" bs=64K count=1 seek=$((i * 2048)) conv=notrunc status=none
    done
    touch -d @1700000000 "$img"
    allocated() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1"))); }
    src_alloc=$(allocated "$img")
    r13_prep_ours() { fresh r13_ours; R13_OURS=$FRESH; : >"$work/oneway.log"; sync_fs; }
    r13_ours() { oneway_q "$work/sparse_src" "$R13_OURS"; }
    r13_prep_cp() { fresh r13_cp; R13_CP=$FRESH; mkdir "$R13_CP"; sync_fs; }
    r13_cp() { cp --sparse=always "$img" "$R13_CP/"; }
    alternate r13_prep_ours r13_ours r13_prep_cp r13_cp
    cmp "$img" "$R13_OURS/disk.img" || { echo "run.sh: row 13's copy differs" >&2; exit 1; }
    ours_alloc=$(allocated "$R13_OURS/disk.img")
    cp_alloc=$(allocated "$R13_CP/disk.img")
    ratio=$(awk -v o="$OURS" -v a="$ANCHOR" 'BEGIN { printf "%.2f", o / a }')
    add_row "13. copy of a sparse file (2 GiB, 1 MiB of data): time vs \`cp --sparse=always\`" \
        "$(printf '%.3f s' "$OURS")" "$(printf '%.3f s' "$ANCHOR")" "${ratio}×" "report" "—"
    verdict=$(awk -v o="$ours_alloc" -v s="$src_alloc" 'BEGIN { print (o <= s + 1048576) ? "PASS" : "MISS" }')
    add_row "13b. the same copy: allocated bytes (st_blocks × 512) vs the source's" \
        "$ours_alloc B" "$src_alloc B (source), $cp_alloc B (cp)" \
        "$(awk -v o="$ours_alloc" -v s="$src_alloc" 'BEGIN { printf "%.2f", o / s }')×" "≤ source + 1 MiB" "$verdict"
    say "  -> allocated: ours $ours_alloc B, source $src_alloc B, cp $cp_alloc B: $verdict"
    # What a copy that writes the whole length costs (as \`rsync -a\` without -S): once, as the
    # reference of the issue's "under 0.1x writing the whole length".
    fresh r13_full; mkdir "$FRESH"; sync_fs
    full_write() { rsync -a "$img" "$FRESH/" && sync; }
    timed full_write
    full=$T
    OURS_SPARSE=$OURS
    OURS=$OURS_SPARSE ANCHOR=$full
    time_row "13c. the same copy vs writing the whole length (\`rsync -a\` without -S, then sync; 1 run)" 0.1
fi

if want 15; then
    say "row 15: the scale curve: peak RSS and time of first and no-change passes on K100, K200, K400"
    # One run per tool and pass (a first pass of K400 takes minutes); peak RSS is the
    # "Maximum resident set size" of /usr/bin/time (for rsync, its largest process). Side A of
    # twoway and unison is a hard-linked copy of the corpus, so that neither can touch it.
    scale_tsv="$work/scale.tsv"
    : >"$scale_tsv"
    # `measured FILE CMD...`: runs CMD under /usr/bin/time; sets T (seconds) and RSS (bytes).
    measured() {
        local out=$1; shift
        sync_fs
        if ! /usr/bin/time -f '%e %M' -o "$out" "$@" >>"$runlog" 2>&1; then
            echo "run.sh: command failed: $*" >&2; tail -n 20 "$runlog" >&2; exit 1
        fi
        read -r T RSS < <(tail -n 1 "$out")
        RSS=$((RSS * 1024))
    }
    declare -A rss100=()
    for tree in K100 K200 K400; do
        src="$corpus/$tree"
        files=$(count_files "$corpus/$tree.done")
        fresh "r15_a_$tree"; A15=$FRESH; cp -al "$src" "$A15"
        # Warm cache, as in the other rows: whoever runs first must not pay for reading the
        # corpus from disk.
        find "$src" -type f -print0 | xargs -0 cat >/dev/null
        fresh r15_ow; OW=$FRESH; fresh r15_rs; RS=$FRESH
        fresh r15_twb; TWB=$FRESH; fresh r15_twh; TWH=$FRESH; mkdir "$TWB"
        fresh r15_unb; UNB=$FRESH; fresh r15_unh; UNH=$FRESH; mkdir "$UNB" "$UNH"
        for pass in first nochange; do
            measured "$work/t" "$oneway" "$src" "$OW" --once -q --log "$work/oneway.log"
            o_t=$T o_rss=$RSS
            measured "$work/t" rsync -a --delete "$src/" "$RS/"
            r_t=$T r_rss=$RSS
            measured "$work/t" "$twoway" "$A15" "$TWB" --home "$TWH" --once -q --no-recovery --log "$work/twoway.log"
            t_t=$T t_rss=$RSS
            measured "$work/t" env HOME="$UNH" UNISONLOCALHOSTNAME=bench-host unison "$A15" "$UNB" -batch -auto -silent -confirmbigdel=false
            u_t=$T u_rss=$RSS
            label=$([[ $pass == first ]] && echo "first pass" || echo "no-change pass")
            printf '%s\toneway %s\t%s\t%s\n' "$files" "$label" "$o_rss" "$o_t" >>"$scale_tsv"
            printf '%s\trsync %s\t%s\t%s\n' "$files" "$label" "$r_rss" "$r_t" >>"$scale_tsv"
            printf '%s\ttwoway %s\t%s\t%s\n' "$files" "$label" "$t_rss" "$t_t" >>"$scale_tsv"
            printf '%s\tunison %s\t%s\t%s\n' "$files" "$label" "$u_rss" "$u_t" >>"$scale_tsv"
            for prog in oneway twoway; do
                if [[ $prog == oneway ]]; then
                    mine=$o_rss mt=$o_t theirs=$r_rss tt=$r_t anchor=rsync limit=64
                else
                    mine=$t_rss mt=$t_t theirs=$u_rss tt=$u_t anchor=unison limit=96
                fi
                key="$prog $pass"
                [[ $tree == K100 ]] && rss100[$key]=$mine
                target="≤ $limit MiB"
                verdict=$(awk -v r="$mine" -v l="$limit" 'BEGIN { print (r <= l * 1048576) ? "PASS" : "MISS" }')
                if [[ $tree == K400 ]]; then
                    target="≤ $limit MiB and ≤ 1.25× K100's"
                    verdict=$(awk -v r="$mine" -v l="$limit" -v b="${rss100[$key]}" \
                        'BEGIN { print (r <= l * 1048576 && r <= 1.25 * b) ? "PASS" : "MISS" }')
                fi
                extra=""
                [[ $prog == twoway ]] && extra=" (--no-recovery)"
                add_row "15. $prog $label$extra, $tree ($files files): peak RSS, time" \
                    "$(awk -v r="$mine" -v t="$mt" 'BEGIN { printf "%.1f MiB, %.2f s", r / 1048576, t }')" \
                    "$(awk -v r="$theirs" -v t="$tt" -v n="$anchor" 'BEGIN { printf "%s %.1f MiB, %.2f s", n, r / 1048576, t }')" \
                    "$(awk -v a="$mine" -v b="$theirs" -v c="$mt" -v d="$tt" 'BEGIN { printf "%.2f× RSS, %.2f× time", a / b, c / d }')" \
                    "$target" "$verdict"
                say "  -> $prog $label on $tree: $((mine / 1048576)) MiB in $mt s ($anchor: $((theirs / 1048576)) MiB in $tt s): $verdict"
            done
        done
        rm -rf "$A15" "$OW" "$RS" "$TWB" "$TWH" "$UNB" "$UNH"
    done
    scale_svg=${SCALE_SVG:-"$corpus/scale-rss.svg"}
    python3 "$here/plot_scale.py" "$scale_tsv" "$scale_svg"
    cp "$scale_tsv" "${scale_svg%.svg}.tsv"
    say "  -> the curve: $scale_svg (points: ${scale_svg%.svg}.tsv)"
fi

# --- report ----------------------------------------------------------------------------------
echo "oneway: $oneway ($("$oneway" --version 2>/dev/null || echo '?')), twoway: $twoway" >&2
echo
echo "runs per tool: $runs (medians), rows: $rows, corpus: $corpus, benchmark time $((SECONDS - started)) s"
echo
echo "| case | ours (median) | anchor (median) | ratio | target | result |"
echo "| --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${table[@]}"
