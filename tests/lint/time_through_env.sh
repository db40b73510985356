#!/usr/bin/env bash
# Time, timers and sleeps go through asyncmq::Env, so that tests control time.
# Refuses direct clock reads and thread sleeps outside src/core/env*.
set -euo pipefail
cd "$1"
hits=$(grep -rnE 'std::chrono::(system_clock|steady_clock|high_resolution_clock)::now|std::this_thread::sleep|\busleep\(|\bnanosleep\(' \
  src tests examples include --include='*.cpp' --include='*.hpp' | grep -vE '^src/core/env' || true)
if [[ -n "$hits" ]]; then
  echo "time or sleep outside Env:"; echo "$hits"; exit 1
fi
echo "time only through Env: ok"
