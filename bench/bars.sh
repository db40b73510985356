#!/usr/bin/env bash
# The end-to-end cost bars of the security features, each measured as a ratio
# against the same binary with the feature off, in one run (bench/compare.sh
# alternates the configurations round by round):
#   sealing  on/off, 1 KiB payloads: sqlite:// >= 0.90, memory:// >= 0.80
#   audit    on/off on sqlite://  >= 0.90 (also shown without CAP_SYS_NICE,
#            as an ordinary service account runs, when run as root)
#   policy   on/off on sqlite://  >= 0.98 (an API key principal and a TOML
#            policy granting producer and worker on the bench queues)
#
#   bench/bars.sh [--rounds N] [--jobs N] [--cli build/release/asyncmq] [seal|audit|policy ...]
#
# Use a release build (make build). Figures from a loaded machine are noisy:
# the ratios are what to read, and more rounds steady them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cli=$here/../build/release/asyncmq
rounds=5
jobs=50000
which=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --cli) cli=$2; shift 2 ;;
    seal|audit|policy) which+=("$1"); shift ;;
    *) echo "bars.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
((${#which[@]})) || which=(seal audit policy)
[[ -x "$cli" ]] || { echo "bars.sh: no CLI at $cli (run make build)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
db=$work/bench.db
bench="bench --jobs $jobs --concurrency 32"

for w in "${which[@]}"; do
  case "$w" in
    seal)
      echo "== sealing, 1 KiB payloads, sqlite://"
      bash "$here/compare.sh" --rounds "$rounds" \
        "plain=$cli --backend sqlite://$db $bench --payload-bytes 1024" \
        "sealed=$cli --backend sqlite://$db $bench --payload-bytes 1024 --seal"
      echo "== sealing, 1 KiB payloads, memory://"
      bash "$here/compare.sh" --rounds "$rounds" \
        "plain=$cli --backend memory:// $bench --payload-bytes 1024" \
        "sealed=$cli --backend memory:// $bench --payload-bytes 1024 --seal"
      ;;
    audit)
      echo "== audit chain, sqlite:// (a fresh chain per run)"
      keys=$work/audit-keys
      # Each audited run starts a fresh chain (new keys, empty log), so every
      # round writes the same records from epoch 0: a reused key file would
      # start later epochs than the fresh log's head.
      # The relay's renderer runs at SCHED_IDLE, which any process may use;
      # as root, "unprivileged" drops CAP_SYS_NICE to show that an ordinary
      # service account gets the same.
      fresh="rm -rf $keys && mkdir -p $keys && $cli --audit-dir $keys audit keygen --verify-key $keys/verify.key >/dev/null"
      unpriv=()
      if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
        unpriv=("unprivileged=$fresh && setpriv --inh-caps=-sys_nice --bounding-set=-sys_nice $cli --backend sqlite://$db --audit-dir $keys $bench")
      fi
      bash "$here/compare.sh" --rounds "$rounds" \
        "off=$cli --backend sqlite://$db $bench" \
        "audited=$fresh && $cli --backend sqlite://$db --audit-dir $keys $bench" \
        "${unpriv[@]}"
      ;;
    policy)
      echo "== policy, sqlite:// (API key principal, TOML policy)"
      export ASYNCMQ_API_KEYS=$work/api-keys.json
      key=$("$cli" apikey create --name bench --role-hint worker --expires 1d 2>/dev/null)
      cat >"$work/policy.toml" <<EOF
[[grant]]
principal = "apikey:bench"
roles = ["producer", "worker"]
queues = ["bench-*"]
EOF
      bash "$here/compare.sh" --rounds "$rounds" \
        "off=$cli --backend sqlite://$db $bench" \
        "policy=ASYNCMQ_API_KEY=$key $cli --backend sqlite://$db --policy $work/policy.toml $bench"
      ;;
  esac
done
