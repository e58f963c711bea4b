"""Sends a known set of metrics to an OTLP/gRPC endpoint with the OpenTelemetry Python SDK, for
integration/tests/prometheus_remote_write.rs, which reads them back from Prometheus after outpost's
`prometheusremotewrite` exporter delivered them.

Resource: service.name "checkout", service.namespace "shop", service.instance.id "node-7",
deployment.environment "edge-test" (plus the SDK's telemetry.sdk.* attributes).

  counter        "outpost.prom.requests" unit "1": route=/buy +3 +4 (7), route=/sell +2 (2)
  up-down        "outpost.prom.queue.depth" unit "{items}": +5 -2 (3)
  gauge          "outpost.prom.temperature" unit "Cel": 21.5
  histogram      "outpost.prom.latency" unit "ms", buckets [10, 100, 1000]: 5, 50, 60, 500, 5000
                 (50 is recorded inside a sampled span, so it carries an exemplar)
  exp. histogram "outpost.prom.payload.size" unit "By": 1, 2, 4, 1000

One collection is exported (force_flush), then shutdown exports the same cumulative values once more.
Prints a JSON summary with the exemplar's trace and span ids; exits 1 if any export failed.
"""

import argparse
import json
import math
import sys
import warnings

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="host:port of the OTLP/gRPC receiver")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)

    results = []

    class Recording(OTLPMetricExporter):
        def export(self, batch, *a, **kw):
            result = super().export(batch, *a, **kw)
            results.append(getattr(result, "name", str(result)))
            return result

    resource = Resource.create(
        {
            "service.name": "checkout",
            "service.namespace": "shop",
            "service.instance.id": "node-7",
            "deployment.environment": "edge-test",
        }
    )
    reader = PeriodicExportingMetricReader(
        Recording(endpoint=f"http://{args.endpoint}", insecure=True, timeout=30),
        export_interval_millis=math.inf,
    )
    views = [
        View(
            instrument_name="outpost.prom.latency",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=[10, 100, 1000]),
        ),
        View(
            instrument_name="outpost.prom.payload.size",
            aggregation=ExponentialBucketHistogramAggregation(),
        ),
    ]
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
    meter = meter_provider.get_meter("outpost.integration.prometheus", "0.1.0")
    tracer = TracerProvider(resource=resource).get_tracer("outpost.integration.prometheus")

    requests = meter.create_counter("outpost.prom.requests", unit="1", description="Requests served")
    requests.add(3, {"route": "/buy"})
    requests.add(4, {"route": "/buy"})
    requests.add(2, {"route": "/sell"})

    depth = meter.create_up_down_counter("outpost.prom.queue.depth", unit="{items}", description="Queued items")
    depth.add(5)
    depth.add(-2)

    temperature = meter.create_gauge("outpost.prom.temperature", unit="Cel", description="Board temperature")
    temperature.set(21.5)

    latency = meter.create_histogram("outpost.prom.latency", unit="ms", description="Request latency")
    for v in (5, 60, 500, 5000):
        latency.record(v)
    with tracer.start_as_current_span("with-exemplar") as span:
        latency.record(50)
        ctx = span.get_span_context()
        trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"

    size = meter.create_histogram("outpost.prom.payload.size", unit="By", description="Payload sizes")
    for v in (1, 2, 4, 1000):
        size.record(v)

    flushed = meter_provider.force_flush(60_000)
    meter_provider.shutdown()
    print(json.dumps({"results": results, "flushed": flushed, "trace_id": trace_id, "span_id": span_id}))
    sys.exit(0 if flushed and results and all(r == "SUCCESS" for r in results) else 1)


if __name__ == "__main__":
    main()
