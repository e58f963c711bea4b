#!/usr/bin/env bash
# File → queue throughput of the filelog receiver: outpost tails a prepared log file (start_at: beginning)
# into its disk queue, and the script times how long it takes until every line is acknowledged (queued
# durably and checkpointed), with outpost's CPU seconds over that time and its peak RSS.
#
#   OUTPOST_BIN=/path/to/release/outpost benches/scripts/filelog-e2e.sh [lines] [line bytes] [files] [sync]
#
# Defaults: 2,000,000 lines of 200 bytes in 1 file, sync: always. The binary must be an optimised build
# (a debug build's figures mean nothing); the script builds nothing. The exporter points at a closed port
# so what is measured is file → queue: nothing leaves the queue during the run.
set -euo pipefail
lines="${1:-2000000}"; line_bytes="${2:-200}"; files="${3:-1}"; sync="${4:-always}"
bin="${OUTPOST_BIN:?set OUTPOST_BIN to an optimised outpost binary}"
[ -x "$bin" ] || { echo "OUTPOST_BIN=$bin is not an executable" >&2; exit 2; }
work="$(mktemp -d)"
cleanup() { [ -n "${agent_pid:-}" ] && kill "$agent_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
admin_port=$(free_port); dead_port=$(free_port)

# Application-style lines of exactly line_bytes bytes (newline included), distinct from one another.
mkdir -p "$work/logs"
per_file=$(( lines / files ))
for f in $(seq 0 $((files - 1))); do
  awk -v n="$per_file" -v w="$line_bytes" -v f="$f" 'BEGIN {
    pad = sprintf("%*s", w, ""); gsub(/ /, "x", pad);
    for (i = 0; i < n; i++) {
      head = sprintf("2024-05-01 12:%02d:%02d.%03d INFO  com.example.orders.Service - file %d order %09d handled in %d ms user=u%06d ",
                     (i / 60000) % 60, (i / 1000) % 60, i % 1000, f, i, i % 977, i % 100000);
      printf "%s%s\n", head, substr(pad, 1, w - 1 - length(head));
    }
  }' > "$work/logs/app$f.log"
done
total_lines=$(( per_file * files ))
total_bytes=$(cat "$work"/logs/*.log | wc -c)

cat > "$work/outpost.yaml" <<YAML
receivers:
  filelog:
    include: ["$work/logs/*.log"]
    start_at: beginning
exporters:
  otlp:
    endpoint: 127.0.0.1:$dead_port
    compression: none
extensions:
  health_check: { endpoint: 127.0.0.1:$admin_port }
queue: { directory: $work/data, sync: $sync, max_size: 8GiB }
service:
  extensions: [health_check]
  pipelines:
    logs: { receivers: [filelog], exporters: [otlp] }
  telemetry: { logs: { level: error } }
YAML

ticks=$(getconf CLK_TCK)
"$bin" run --config "$work/outpost.yaml" 2> "$work/outpost.log" &
agent_pid=$!
cpu() { awk '{print $14+$15}' "/proc/$agent_pid/stat"; }
accepted() { curl -s "http://127.0.0.1:$admin_port/metrics" | awk '/^outpost_receiver_accepted_items_total\{receiver="filelog"/ {s+=$2} END {print s+0}'; }
# Reading starts at start-up: the clock and the CPU count start at the first sign of life.
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null && break; sleep 0.02; done
t0=$(date +%s.%N); cpu0=$(cpu)
while [ "$(accepted)" -lt "$total_lines" ]; do
  kill -0 "$agent_pid" 2>/dev/null || { echo "outpost exited:"; cat "$work/outpost.log"; exit 1; }
  sleep 0.05
done
t1=$(date +%s.%N); cpu1=$(cpu)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent_pid/status")
metrics=$(curl -s "http://127.0.0.1:$admin_port/metrics")
records=$(echo "$metrics" | awk '/^outpost_queue_records\{stream="logs"/ {print $2}')
qbytes=$(echo "$metrics" | awk '/^outpost_queue_bytes\{stream="logs"/ {print $2}')
python3 - "$t0" "$t1" "$cpu0" "$cpu1" "$ticks" "$total_lines" "$total_bytes" "$hwm" "$records" "$qbytes" "$sync" "$files" "$line_bytes" <<'PY'
import json, sys
t0, t1, c0, c1, ticks, lines, nbytes, hwm, records, qbytes = map(float, sys.argv[1:11])
secs = t1 - t0
cpu = (c1 - c0) / ticks
print(json.dumps({
    "files": int(sys.argv[12]), "line_bytes": int(sys.argv[13]), "sync": sys.argv[11],
    "lines": int(lines), "mib": round(nbytes / 2**20, 1), "elapsed_s": round(secs, 2),
    "lines_per_s": round(lines / secs), "mib_per_s": round(nbytes / 2**20 / secs, 1),
    "outpost_cpu_s": round(cpu, 2), "cpu_s_per_million_lines": round(cpu / lines * 1e6, 2),
    "peak_rss_mib": round(hwm / 1024, 1), "queue_records": int(records), "queue_mib": round(qbytes / 2**20, 1),
}, indent=1))
PY
