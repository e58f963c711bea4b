#!/usr/bin/env bash
# Scraping cost, outpost against the Prometheus agent, on the same targets and machine: N targets (python
# http.server, each serving the same node-exporter-shaped page of S samples) scraped every INTERVAL,
# first by outpost (prometheus receiver → disk queue → debug exporter), then by `prometheus
# --enable-feature=agent` (scrape → WAL; no remote_write, so neither side ships anything). For each, over
# WINDOW seconds after a warm-up: CPU seconds (utime+stime from /proc) per million samples scraped, samples
# per CPU-second, and RSS (per 100k active series, and absolute).
#
#   benches/scripts/prometheus-scrape.sh [targets=10] [samples_per_target=5000] [interval=2s] [window=60]
#
# OUTPOST_BIN overrides the outpost binary (default: a release build in the target dir, built here with
# the same package selection as every other build). ONLY=outpost or ONLY=prometheus measures one side
# (for A/B runs of two outpost builds in turn). The targets answer HTTP/1.1 and keep connections open,
# as Go exporters (node_exporter) do; PROTOCOL=HTTP/1.0 makes them close each connection after one
# answer (what this script's targets did before). The targets' CPU is not counted for either side.
set -euo pipefail
cd "$(dirname "$0")/../.."
targets="${1:-10}"; per_target="${2:-5000}"; interval="${3:-2s}"; window="${4:-60}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
if [ -z "${OUTPOST_BIN:-}" ]; then
    cargo build --release -q --workspace --bins
    OUTPOST_BIN="$target_dir/release/outpost"
fi
command -v prometheus >/dev/null || { echo "prometheus is not installed (apt-get install prometheus)" >&2; exit 1; }
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# The page: counters (3 labels), gauges (3 labels), histograms (10 buckets), summaries (5 quantiles).
mkdir -p "$work/www"
python3 - "$per_target" > "$work/www/metrics" <<'PY'
import sys
want = int(sys.argv[1]); n = 0; f = 0
while n < want:
    k = f % 4
    if k == 0:
        print(f"# TYPE app_requests_{f}_total counter")
        for code in ("200", "404", "500"):
            for m in ("GET", "POST", "PUT", "DELETE"):
                print(f'app_requests_{f}_total{{code="{code}",method="{m}",handler="/api/v1/items"}} {n*17+3}'); n += 1
    elif k == 1:
        print(f"# TYPE node_filesystem_{f}_bytes gauge")
        for d in range(8):
            print(f'node_filesystem_{f}_bytes{{device="/dev/sda{d}",fstype="ext4",mountpoint="/mnt/{d}"}} {n}.5e+09'); n += 1
    elif k == 2:
        print(f"# TYPE http_latency_{f}_seconds histogram")
        for r in ("a", "b"):
            c = 0
            for le in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"):
                c += 3; print(f'http_latency_{f}_seconds_bucket{{route="{r}",le="{le}"}} {c}')
            print(f'http_latency_{f}_seconds_sum{{route="{r}"}} 12.5'); print(f'http_latency_{f}_seconds_count{{route="{r}"}} {c}'); n += 12
    else:
        print(f"# TYPE rpc_{f}_seconds summary")
        for q in ("0", "0.25", "0.5", "0.75", "1"):
            print(f'rpc_{f}_seconds{{quantile="{q}"}} 0.{f}')
        print(f"rpc_{f}_seconds_sum 1.5"); print(f"rpc_{f}_seconds_count 40"); n += 7
    f += 1
PY
samples=$(grep -vc '^#' "$work/www/metrics")
addrs=()
for i in $(seq "$targets"); do
    port=$(free_port)
    python3 -m http.server --protocol "${PROTOCOL:-HTTP/1.1}" --bind 127.0.0.1 --directory "$work/www" "$port" >/dev/null 2>&1 &
    pids+=($!)
    addrs+=("127.0.0.1:$port")
done
sleep 1
target_list=$(printf '"%s", ' "${addrs[@]}"); target_list="[${target_list%, }]"

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# The machine's 1-minute load average: CPU seconds of a process are inflated when others compete for
# the cores (cache and frequency effects), so every figure is printed with the load it was taken under.
loadavg() { cut -d' ' -f1 /proc/loadavg; }
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
metric_sum() { curl -sf "$1" | awk -v m="$2" 'index($0, m) == 1 && $0 !~ /^#/ {s += $NF} END {printf "%d\n", s}'; }
interval_s=$(python3 -c "import re,sys; v='$interval'; u={'ms':0.001,'s':1,'m':60}; m=re.fullmatch(r'(\d+)(ms|s|m)', v); print(int(m.group(1))*u[m.group(2)])")
warmup=$(python3 -c "print(max(5, 3*$interval_s))")

# report NAME PID SCRAPES_BEFORE SCRAPES_AFTER CPU_BEFORE CPU_AFTER
report() {
    python3 - "$@" "$samples" "$targets" "$(getconf CLK_TCK)" "$(rss_kib "$2")" <<'PY'
import sys
name, _pid, s0, s1, c0, c1, samples, targets, tck, rss = sys.argv[1:]
scrapes = int(s1) - int(s0); cpu = (int(c1) - int(c0)) / int(tck)
total = scrapes * int(samples); series = int(samples) * int(targets)
print(f"{name}: {scrapes} scrapes, {total} samples in the window, {cpu:.2f} CPU s")
if total and cpu:
    print(f"  {cpu / total * 1e6:.3f} CPU s per million samples; {total / cpu:,.0f} samples per CPU-second")
print(f"  RSS {int(rss)/1024:.1f} MiB for {series} active series ({int(rss)/1024 / series * 1e5:.1f} MiB per 100k series, process total)")
PY
}

echo "--- $targets targets × $samples samples every $interval, window ${window}s, targets speak ${PROTOCOL:-HTTP/1.1}"

only="${ONLY:-}"
if [ "$only" != prometheus ]; then
# outpost
admin=$(free_port)
cat > "$work/outpost.yaml" <<YAML
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: bench
          scrape_interval: $interval
          static_configs: [{targets: $target_list}]
exporters:
  debug: { verbosity: basic }
extensions:
  health_check: { endpoint: 127.0.0.1:$admin }
queue: { directory: $work/outpost-data }
service:
  extensions: [health_check]
  pipelines:
    metrics: { receivers: [prometheus], exporters: [debug] }
  telemetry: { logs: { level: warn } }
YAML
"$OUTPOST_BIN" run --config "$work/outpost.yaml" > "$work/outpost.log" 2>&1 &
opid=$!; pids+=($opid)
sleep "$warmup"
m="http://127.0.0.1:$admin/metrics"; q='outpost_receiver_scrapes_total{receiver="prometheus",job="bench",result="ok"}'
s0=$(metric_sum "$m" "$q"); c0=$(cpu_ticks $opid); l0=$(loadavg)
sleep "$window"
s1=$(metric_sum "$m" "$q"); c1=$(cpu_ticks $opid)
report outpost $opid "$s0" "$s1" "$c0" "$c1"
echo "  load average (1 min) at the window's start and end: $l0, $(loadavg)"
failed=$(metric_sum "$m" 'outpost_receiver_scrapes_total{receiver="prometheus",job="bench",result="failed"}')
skipped=$(metric_sum "$m" 'outpost_receiver_skipped_scrapes_total')
echo "  failed scrapes: $failed, skipped: $skipped"
kill $opid; wait $opid 2>/dev/null || true
fi
[ "$only" = outpost ] && exit 0

# Prometheus in agent mode
pport=$(free_port)
cat > "$work/prometheus.yml" <<YAML
global: { scrape_interval: $interval, scrape_timeout: $interval }
scrape_configs:
  - job_name: bench
    static_configs: [{targets: $target_list}]
YAML
prometheus --enable-feature=agent --config.file="$work/prometheus.yml" --storage.agent.path="$work/wal" \
    --web.listen-address="127.0.0.1:$pport" --log.level=warn > "$work/prometheus.log" 2>&1 &
ppid=$!; pids+=($ppid)
sleep "$warmup"
m="http://127.0.0.1:$pport/metrics"; q='prometheus_target_interval_length_seconds_count'
s0=$(metric_sum "$m" "$q"); c0=$(cpu_ticks $ppid); l0=$(loadavg)
sleep "$window"
s1=$(metric_sum "$m" "$q"); c1=$(cpu_ticks $ppid)
report "prometheus agent" $ppid "$s0" "$s1" "$c0" "$c1"
echo "  load average (1 min) at the window's start and end: $l0, $(loadavg)"
