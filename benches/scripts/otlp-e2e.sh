#!/usr/bin/env bash
# End-to-end OTLP throughput of outpost: loadgen → outpost (otlp → memory_limiter → batch → disk queue →
# otlp) → otlp-sink, all on 127.0.0.1. Prints loadgen's report and outpost's CPU seconds per million items
# and peak RSS.
#
#   benches/scripts/otlp-e2e.sh [grpc|http] [duration] [batch] [in-flight] [sync: always|never|100ms]
#
# FRESH_TRACE_IDS=1 makes loadgen give every request new trace ids (gRPC only). TAIL_SAMPLING=1 adds a
# tail_sampling processor (errors, latency >= 500ms, 10% probabilistic; decision_wait 1s) before the
# batch processor, and implies FRESH_TRACE_IDS=1, so that each request brings new traces as real
# traffic does. Compare a TAIL_SAMPLING=1 run with a FRESH_TRACE_IDS=1 run: the same load, with and
# without the processor.
#
# KEEP_ALL=1 (with TAIL_SAMPLING=1) replaces the policies by one always_sample policy: every trace is held
# for decision_wait and then kept, the processor's worst case (all its work, none of the queue and export
# work it usually saves).
#
# PIN=1 runs outpost on CPU 0 and loadgen and the sink on CPU 1 (taskset), so outpost's throughput is
# what one core of its own gives, and the sink's work (five times larger without tail sampling) does not
# take CPU from outpost. Without it all three processes share the cores, so the figures are a floor for
# outpost alone.
#
# Builds release binaries into the usual target dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
protocol="${1:-grpc}"; duration="${2:-20s}"; batch="${3:-512}"; inflight="${4:-32}"; sync="${5:-always}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
tail_sampling="${TAIL_SAMPLING:-0}"; fresh="${FRESH_TRACE_IDS:-$tail_sampling}"
processors="memory_limiter, batch"; fresh_flag=""
pin_agent=""; pin_load=""
if [ "${PIN:-0}" = 1 ]; then pin_agent="taskset -c 0"; pin_load="taskset -c 1"; fi
if [ "${KEEP_ALL:-0}" = 1 ]; then
  policies="      - { name: keep-all, type: always_sample }"
else
  policies="      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
      - { name: slow, type: latency, latency: { threshold_ms: 500 } }
      - { name: sample-10, type: probabilistic, probabilistic: { sampling_percentage: 10 } }"
fi
if [ "$tail_sampling" = 1 ]; then processors="memory_limiter, tail_sampling, batch"; fi
if [ "$fresh" = 1 ]; then fresh_flag="--fresh-trace-ids"; fi
# The same package selection as every other build of the workspace: a narrower one resolves other features
# for RocksDB's build-time dependencies and rebuilds its C++.
cargo build --release -q --workspace --bins
bin="$target/release"
work="$(mktemp -d)"
cleanup() { kill "${sink_pid:-}" "${agent_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

$pin_load "$bin/otlp-sink" > "$work/sink.out" &
sink_pid=$!
for _ in $(seq 50); do [ -s "$work/sink.out" ] && break; sleep 0.1; done
sink_addr="$(head -1 "$work/sink.out")"
grpc_port=$(free_port); http_port=$(free_port); admin_port=$(free_port)

cat > "$work/outpost.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:$grpc_port }
      http: { endpoint: 127.0.0.1:$http_port }
processors:
  memory_limiter: { limit_mib: 512 }
  batch: { send_batch_size: 8192, send_batch_max_size: 16384, timeout: 200ms }
  tail_sampling:
    decision_wait: 1s
    num_traces: 200000
    max_memory: 256MiB
    policies:
$policies
exporters:
  otlp:
    endpoint: $sink_addr
    compression: none
    tls: { insecure: true }
extensions:
  health_check: { endpoint: 127.0.0.1:$admin_port }
queue: { directory: $work/data, sync: $sync }
service:
  extensions: [health_check]
  pipelines:
    traces: { receivers: [otlp], processors: [$processors], exporters: [otlp] }
  telemetry: { logs: { level: warn } }
YAML

$pin_agent "$bin/outpost" run --config "$work/outpost.yaml" 2> "$work/outpost.log" &
agent_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null && break; sleep 0.1; done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$agent_pid/stat"; }
cpu0=$(cpu)
if [ "$protocol" = grpc ]; then endpoint="127.0.0.1:$grpc_port"; else endpoint="http://127.0.0.1:$http_port"; fi
$pin_load "$bin/loadgen" --protocol "$protocol" --endpoint "$endpoint" --batch "$batch" --in-flight "$inflight" \
    --duration "$duration" --quiet --json $fresh_flag > "$work/loadgen.json"
cpu1=$(cpu)
# Let the last batches reach the sink before reading its count (and tail sampling decide the last traces).
sleep $([ "$tail_sampling" = 1 ] && echo 3 || echo 1)
sent=$(curl -s "http://127.0.0.1:$admin_port/metrics" | awk '/^outpost_exporter_sent_items_total/ {s+=$2} END {print s+0}')
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent_pid/status")
python3 - "$work/loadgen.json" "$cpu0" "$cpu1" "$ticks" "$sent" "$hwm" "$protocol" "$batch" "$inflight" "$sync" "$tail_sampling" "$fresh" "${PIN:-0}" "${KEEP_ALL:-0}" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
cpu0, cpu1, ticks, sent, hwm = map(float, sys.argv[2:7])
cpu_s = (cpu1 - cpu0) / ticks
accepted = rep.get("items_accepted", 0)
print(json.dumps({
    "protocol": sys.argv[7], "batch": int(sys.argv[8]), "in_flight": int(sys.argv[9]), "sync": sys.argv[10],
    "tail_sampling": sys.argv[11] == "1", "fresh_trace_ids": sys.argv[12] == "1",
    "pinned": sys.argv[13] == "1", "keep_all": sys.argv[14] == "1",
    "elapsed_s": rep.get("elapsed_secs"), "items_accepted": accepted,
    "items_per_s": round(rep.get("items_per_sec", 0)), "answers": rep.get("answers"),
    "latency": rep.get("latency"),
    "exported_items": int(sent),
    "outpost_cpu_s": round(cpu_s, 2),
    "cpu_s_per_million": round(cpu_s / accepted * 1e6, 2) if accepted else None,
    "peak_rss_mib": round(hwm / 1024, 1),
}, indent=1))
PY
