#!/usr/bin/env bash
# Compares end-to-end throughput of several `asyncmq bench` configurations in
# one run, as the issues ask: rounds alternate the configurations (A B C A B C
# ...), so a machine that gets busier or quieter during the run moves every
# configuration alike, and the report gives each one's median and its ratio to
# the first (the baseline).
#
#   bench/compare.sh [--rounds N] [--phase end_to_end|process|enqueue] \
#     'off=build/release/asyncmq --backend sqlite:///tmp/c.db bench --jobs 50000' \
#     'seal=build/release/asyncmq --backend sqlite:///tmp/c.db bench --jobs 50000 --seal'
#
# Each argument is NAME=COMMAND; the command must print `asyncmq bench
# --json` output (--json is added when missing). A sqlite:///... file named in
# a command is deleted before each of its runs, so every run starts from an
# empty store of the same size. Medians, not means: one run disturbed by
# another process on a two-core machine must not decide the ratio. Two
# ratios: of the medians, and the median of the rounds' own ratios (paired).
set -euo pipefail

rounds=5
phase=end_to_end
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --phase) phase=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [[ $# -lt 1 ]]; then
  echo "usage: compare.sh [--rounds N] [--phase end_to_end|process|enqueue] NAME=COMMAND ..." >&2
  exit 2
fi
case "$phase" in end_to_end|process|enqueue) ;; *) echo "compare.sh: bad --phase $phase" >&2; exit 2 ;; esac

names=() cmds=()
for spec in "$@"; do
  [[ "$spec" == *=* ]] || { echo "compare.sh: '$spec' is not NAME=COMMAND" >&2; exit 2; }
  names+=("${spec%%=*}")
  cmd="${spec#*=}"
  [[ " $cmd " == *" --json "* ]] || cmd="$cmd --json"
  cmds+=("$cmd")
done

declare -A results
for ((r = 1; r <= rounds; ++r)); do
  for i in "${!names[@]}"; do
    cmd=${cmds[$i]}
    # Fresh store for every run: the same file size, the same page cache state.
    for db in $(grep -oE 'sqlite://[^ ?]+' <<<"$cmd" | sed 's|^sqlite://||'); do
      rm -f "$db" "$db-wal" "$db-shm"
      rm -rf "$db.subject-keys"
    done
    out=$(bash -c "$cmd" 2>/tmp/compare.err) || { echo "compare.sh: '${names[$i]}' failed:" >&2; cat /tmp/compare.err >&2; exit 1; }
    v=$(sed -nE "s/.*\"${phase}_jobs_per_s\":([0-9.eE+-]+).*/\1/p" <<<"$out" | head -1)
    [[ -n "$v" ]] || { echo "compare.sh: no ${phase}_jobs_per_s in the output of '${names[$i]}': $out" >&2; exit 1; }
    v=$(printf '%.0f' "$v")
    results[$i]="${results[$i]:-} $v"
    printf 'round %d  %-12s %8d jobs/s\n' "$r" "${names[$i]}" "$v"
  done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# The median of the per-round ratios: a round's runs follow each other
# within seconds, so a machine that is busier for a round moves both of them
# (the ratio of the medians compares runs that may be minutes apart).
paired() {
  paste -d' ' <(tr ' ' '\n' <<<"$1" | grep -v '^$') <(tr ' ' '\n' <<<"$2" | grep -v '^$') |
    awk '{print $1 / $2}' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}
echo
printf '%-12s %10s %8s %8s   %s\n' config median ratio paired "runs ($phase jobs/s)"
base=$(median "${results[0]}")
for i in "${!names[@]}"; do
  m=$(median "${results[$i]}")
  printf '%-12s %10.0f %8.3f %8.3f  %s\n' "${names[$i]}" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN{print a/b}')" \
    "$(paired "${results[$i]}" "${results[0]}")" "${results[$i]}"
done
