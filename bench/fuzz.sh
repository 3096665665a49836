#!/usr/bin/env bash
# Fuzz kcert's parsers: every cargo-fuzz (libFuzzer) target in fuzz/ for a bounded time each,
# starting from the project's seed corpus in fuzz/corpus/<target>/ (never written to: what the
# fuzzer finds goes to fuzz/work/<target>/, crashes to fuzz/artifacts/<target>/). Prints per
# target: execs, coverage (libFuzzer's cov: edges, ft: features), corpus size and crashes.
#
# usage: bench/fuzz.sh [TARGET...]     (default: every target in fuzz/Cargo.toml)
# env:   FUZZ_SECONDS  seconds per target (default 60)
#        FUZZ_JOBS     libFuzzer processes per target (default 1)
#        FUZZ_SANITIZER  none (default: kcert is safe Rust, none runs ~2x faster) or address
#        FUZZ_RSS_MB   memory limit of one fuzz process (default 2048)
# A crash, timeout (an input over 10 s) or out-of-memory is written to fuzz/artifacts/<target>/;
# replay one with `cargo fuzz run <target> <file>` (in fuzz/, with the same RUSTC_BOOTSTRAP),
# fix the parser, and copy the input to fuzz/corpus/<target>/ so `cargo test` keeps it fixed.
# Exit status: 1 when any target found something.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
fuzz="$repo/fuzz"
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
sanitizer=${FUZZ_SANITIZER:-none}
rss=${FUZZ_RSS_MB:-2048}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' "$fuzz/Cargo.toml" | grep -v '^kcert-fuzz$')
fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes nightly-only flags (-Z...); a stable toolchain accepts them with this.
export RUSTC_BOOTSTRAP=1
cd "$fuzz"
nice -n 19 cargo fuzz build -O -a -s "$sanitizer" >/dev/null

dict_of() {
  case "$1" in
    inventory | kubeconfig | manifest | playbook) echo yaml ;;
    unit) echo unit ;;
    pem) echo pem ;;
    plan | journal) echo json ;;
    *) echo ssh ;;
  esac
}

found=0
printf '%-12s %12s %10s %8s %8s %8s  %s\n' target execs execs/s cov ft corpus found
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  log="work/$t.log"
  parallel=()
  [ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
  set +e
  nice -n 19 cargo fuzz run -O -a -s "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb="$rss" -max_len=65536 \
    -dict="dict/$(dict_of "$t").dict" "${parallel[@]}" \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
  set -e
  # With -jobs, each job logs to fuzz-N.log in the current directory.
  cat fuzz-*.log >>"$log" 2>/dev/null || true
  rm -f fuzz-*.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s+=$1} END {print s+0}')
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | awk '{s+=$1} END {print s+0}')
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  [ "$crashes" -gt 0 ] && found=1
  printf '%-12s %12s %10s %8s %8s %8s  %s\n' "$t" "$execs" "$rate" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes"
  if [ "$crashes" -gt 0 ]; then
    find "artifacts/$t" -type f | sed 's/^/    /'
    grep -m1 -E "panicked at|ERROR: libFuzzer|deadly signal|out-of-memory|timeout" "$log" | sed 's/^/    /' || true
  fi
done
exit "$found"
