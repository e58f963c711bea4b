#!/usr/bin/env bash
# OTLP metrics → outpost → Prometheus remote-write → a real Prometheus, all on 127.0.0.1.
#
#   benches/scripts/prw-e2e.sh live  [requests] [batch] [in-flight] [max_samples_per_request]
#   benches/scripts/prw-e2e.sh drain [requests] [batch] [in-flight] [max_samples_per_request]
#
# live:  Prometheus is up; metrics-feed sends `requests` OTLP requests of `batch` points (gauges and sums,
#        fresh timestamps per request) with `in-flight` slots; reports the feed's rate and the delivered
#        samples/s from the first request to the last sample acknowledged by Prometheus.
# drain: Prometheus is down while the same load is queued on disk; then Prometheus starts and the script
#        reports how fast outpost drains the backlog (samples/s from the first delivery to the last).
# CPU is outpost's (and Prometheus's) over the whole run (live) or over the drain alone (drain). Both check that Prometheus
# appended exactly the samples sent (prometheus_tsdb_head_samples_appended_total)
# and report outpost's CPU seconds per million samples and peak RSS.
#
# Needs `prometheus` (Debian's package) and builds release binaries into $CARGO_TARGET_DIR (or ./target).
# On a 2-core machine the feed, outpost and Prometheus share the cores, so the figures are a floor.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode="${1:-live}"; requests="${2:-2000}"; batch="${3:-1000}"; inflight="${4:-4}"; max_samples="${5:-2000}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q --workspace --bins
bin="$target/release"
prometheus="${OUTPOST_TEST_PROMETHEUS:-$(command -v prometheus || echo /usr/bin/prometheus)}"
work="$(mktemp -d)"
cleanup() { kill "${prom_pid:-}" "${agent_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
now() { date +%s.%N; }
metric() { curl -s "http://127.0.0.1:$admin_port/metrics" | awk -v m="$1" 'index($0, m) == 1 {s+=$2} END {print s+0}'; }

prom_port=$(free_port); grpc_port=$(free_port); admin_port=$(free_port)
start_prometheus() {
    printf 'global:\n  scrape_interval: 1m\n' > "$work/prometheus.yml"
    "$prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
        --web.listen-address="127.0.0.1:$prom_port" --web.enable-remote-write-receiver \
        --enable-feature=native-histograms > "$work/prometheus.log" 2>&1 &
    prom_pid=$!
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null && return; sleep 0.1; done
    echo "Prometheus did not start:" >&2; cat "$work/prometheus.log" >&2; exit 1
}

cat > "$work/outpost.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:$grpc_port }
processors:
  memory_limiter: { limit_mib: 512 }
  batch: { send_batch_size: 8192, send_batch_max_size: 16384, timeout: 200ms }
exporters:
  prometheusremotewrite:
    endpoint: http://127.0.0.1:$prom_port/api/v1/write
    timeout: 30s
    max_samples_per_request: $max_samples
    target_info: { enabled: false }
    retry_on_failure: { initial_interval: 200ms, max_interval: 1s }
    circuit_breaker: { initial_interval: 200ms, max_interval: 1s }
extensions:
  health_check: { endpoint: 127.0.0.1:$admin_port }
queue: { directory: $work/data, sync: 100ms, max_size: 8GiB }
service:
  extensions: [health_check]
  pipelines:
    metrics: { receivers: [otlp], processors: [memory_limiter, batch], exporters: [prometheusremotewrite] }
  telemetry: { logs: { level: error } }
YAML

[ "$mode" = live ] && start_prometheus
"$bin/outpost" run --config "$work/outpost.yaml" 2> "$work/outpost.log" &
agent_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null && break; sleep 0.1; done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$agent_pid/stat"; }
prom_cpu() { curl -s "http://127.0.0.1:$prom_port/metrics" | awk '/^process_cpu_seconds_total/ {print $2}'; }
sent_q='outpost_exporter_sent_items_total{exporter="prometheusremotewrite"'
cpu0=$(cpu)
[ "$mode" = live ] && pcpu0=$(prom_cpu)
t0=$(now)
"$bin/metrics-feed" --endpoint "127.0.0.1:$grpc_port" --batch "$batch" --requests "$requests" \
    --in-flight "$inflight" > "$work/feed.json"
t_fed=$(now)
total=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["points_accepted"])' "$work/feed.json")

if [ "$mode" = drain ]; then
    queued=$(metric 'outpost_queue_bytes{')
    start_prometheus
    t_up=$(now)
    # The first delivery after the outage starts the clock.
    while [ "$(metric "$sent_q")" = 0 ]; do sleep 0.05; done
    t0=$(now)
    cpu0=$(cpu)
    pcpu0=$(prom_cpu)
fi
while [ "$(metric "$sent_q")" -lt "$total" ]; do
    if ! kill -0 "$agent_pid" 2>/dev/null; then echo "outpost died:" >&2; cat "$work/outpost.log" >&2; exit 1; fi
    sleep 0.05
done
t_done=$(now)
cpu1=$(cpu)
pcpu1=$(prom_cpu)
appended=$(curl -s "http://127.0.0.1:$prom_port/metrics" |
    awk '/^prometheus_tsdb_head_samples_appended_total/ {s+=$2} END {printf "%d", s}')
failed=$(metric 'outpost_exporter_send_failed_items_total{')
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent_pid/status")
python3 - "$work/feed.json" "$mode" "$total" "$t0" "$t_fed" "$t_done" "$cpu0" "$cpu1" "$ticks" "$appended" \
    "$failed" "$hwm" "$batch" "$inflight" "$max_samples" "${queued:-0}" "${t_up:-0}" "$pcpu0" "$pcpu1" <<'PY'
import json, sys
feed = json.load(open(sys.argv[1]))
mode = sys.argv[2]
total = int(sys.argv[3])
t0, t_fed, t_done, cpu0, cpu1, ticks = map(float, sys.argv[4:10])
appended, failed, hwm = int(sys.argv[10]), float(sys.argv[11]), float(sys.argv[12])
cpu_s = (cpu1 - cpu0) / ticks
out = {
    "mode": mode, "batch": int(sys.argv[13]), "feed_in_flight": int(sys.argv[14]),
    "max_samples_per_request": int(sys.argv[15]),
    "samples": total, "feed_points_per_s": feed["points_per_s"],
    "delivered_samples_per_s": round(total / (t_done - t0)),
    "seconds": round(t_done - t0, 2),
    "prometheus_appended": appended, "failed": failed,
    "outpost_cpu_s": round(cpu_s, 2), "cpu_s_per_million": round(cpu_s / total * 1e6, 2),
    "peak_rss_mib": round(hwm / 1024, 1),
    "prometheus_cpu_s_per_million": round((float(sys.argv[19]) - float(sys.argv[18])) / total * 1e6, 2),
}
if mode == "drain":
    out["backlog_queue_mib"] = round(float(sys.argv[16]) / 2**20, 1)
    out["first_delivery_after_up_s"] = round(t0 - float(sys.argv[17]), 2)
print(json.dumps(out, indent=1))
if appended != total or failed:
    sys.exit(f"Prometheus appended {appended} samples of {total}, {failed} failed")
PY
