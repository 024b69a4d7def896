#!/bin/sh
# The long run of the state-machine harness (issue 17): FUZZ_RUNS
# executions of c_build/fuzz/fuzz_conn in all, split over FUZZ_JOBS
# processes at nice 19 that share one corpus (c_build/fuzz/long/corpus,
# libFuzzer reloads it from the other processes; the seeds in
# c_test/corpus/fuzz_conn are only read). Each job logs to
# c_build/fuzz/long/jobN.log; at the end (or on Ctrl-C) the per-job
# execution counts and their sum are printed, with the commit, so the
# count is easy to state. Exit status 1 if a job found something (crash,
# leak, sanitizer report, invariant, timeout: the input is left as
# c_build/fuzz/long/crash-* etc.).
#   make fuzz-long FUZZ_RUNS=10000000 FUZZ_JOBS=2 [FUZZ_LONG_SECONDS=N]
set -u
runs=${FUZZ_RUNS:-10000000}
jobs=${FUZZ_JOBS:-2}
secs=${FUZZ_LONG_SECONDS:-0}
bin=c_build/fuzz/fuzz_conn
dir=c_build/fuzz/long
mkdir -p "$dir/corpus"
per=$(((runs + jobs - 1) / jobs))
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain -- c_src c_test 2>/dev/null | head -n 1)
echo "fuzz-long: $jobs jobs x $per runs, commit $commit${dirty:+ (with local changes)}, from $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "  load: $(uptime | sed 's/.*load/load/')"
pids=""
j=0
while [ "$j" -lt "$jobs" ]; do
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 nice -n 19 "$bin" -runs="$per" \
        -max_total_time="$secs" -max_len=16384 -timeout=120 -print_final_stats=1 \
        -artifact_prefix="$dir/" "$dir/corpus" c_test/corpus/fuzz_conn \
        >"$dir/job$j.log" 2>&1 &
    pids="$pids $!"
    j=$((j + 1))
done
stopped=0
trap 'stopped=1; for p in $pids; do kill -INT "$p" 2>/dev/null; done' INT TERM
fail=0
for p in $pids; do
    while :; do
        wait "$p"
        rc=$?
        # a trapped signal interrupts wait (rc > 128) while the job still runs
        if [ "$rc" -gt 128 ] && kill -0 "$p" 2>/dev/null; then
            continue
        fi
        break
    done
    [ "$rc" -eq 0 ] || fail=1
done
total=0
j=0
while [ "$j" -lt "$jobs" ]; do
    log="$dir/job$j.log"
    # the final stats, or (stopped early) the last status line's #count
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [ -n "$n" ] || n=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    [ -n "$n" ] || n=0
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    echo "  job $j: $n executions${rate:+, $rate exec/s}${rss:+, peak RSS $rss MB} ($log)"
    total=$((total + n))
    j=$((j + 1))
done
echo "fuzz-long: $total executions in all, commit $commit, until $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
# a job interrupted by hand (SIGINT to the job itself, not to this
# script) exits non-zero too: a stop, not a finding
if grep -q 'libFuzzer: run interrupted' "$dir"/job*.log 2>/dev/null; then
    stopped=1
fi
found=0
for f in "$dir"/job*.log; do
    if grep -qE '^==[0-9]+==ERROR|^fuzz_conn: |^fake_(net|loop): |deadly signal|ALARM: working on|runtime error:' "$f"; then
        found=1
        echo "== $f"
        tail -n 40 "$f"
    fi
done
if [ "$found" -ne 0 ] || { [ "$fail" -ne 0 ] && [ "$stopped" -eq 0 ]; }; then
    echo "fuzz-long: FAILED (a job stopped with a finding or an error; see its log)"
    exit 1
fi
if [ "$stopped" -ne 0 ]; then
    echo "fuzz-long: stopped by a signal before FUZZ_RUNS; no finding in the logs"
    exit 0
fi
echo "fuzz-long: clean"
