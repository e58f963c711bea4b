"""Sends a known set of telemetry to an OTLP endpoint with the OpenTelemetry Python SDK.

Used by integration/tests/sdk_roundtrip.rs, which checks that everything sent here arrives intact at
the other end of outpost. What is sent (N = --count, a multiple of 4):

traces   N spans from TracerProvider -> BatchSpanProcessor -> OTLPSpanExporter, tracer
         "outpost.integration.traces" version "1.2.3". N/4 traces of 4 spans each: span 4t is the root
         (SERVER, named "root-{i}", with an event "root.started"), 4t+1 its child "child-{i}", 4t+2 a
         grandchild "grandchild-{i}" under 4t+1 (status ERROR "boom-{i}"), 4t+3 a second child
         "sibling-{i}" (CLIENT) under the root. Every span i has attributes span.index=i (int),
         span.even=(i%2==0) (bool), span.ratio=i/8 (double), span.label="label-{i}" (string),
         span.trace=t (int).
metrics  N data points in one collection (meter "outpost.integration.metrics" version "4.5.6"):
         counter "outpost.test.requests" (unit "1"): 6N/10 points, point.index=i, value i+1;
         histogram "outpost.test.latency" (unit "ms"): 3N/10 points, point.index=i, one value i*0.5;
         up-down counter "outpost.test.depth": N/10 points, point.index=i, value -i.
logs     N records through logging + LoggingHandler -> BatchLogRecordProcessor -> OTLPLogExporter,
         logger "outpost.integration.logs": body "log message {i}", levels cycling
         INFO, WARNING, ERROR, DEBUG, attributes log.index=i, log.even=(i%2==0), log.ratio=i/4.

Every export's result is recorded; the script prints a JSON summary and exits 1 if any export did not
succeed, so the Rust side can tell a client-side failure from a loss inside outpost.
"""

import argparse
import json
import logging
import math
import sys
import warnings

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def exporters(transport, endpoint):
    """The SDK's OTLP exporter classes and their constructor arguments for `transport`."""
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        def kwargs(_signal):
            return {"endpoint": f"http://{endpoint}", "insecure": True, "timeout": 30}

    else:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        def kwargs(signal):
            # gzip, so outpost's HTTP decompression is on the path too.
            return {
                "endpoint": f"http://{endpoint}/v1/{signal}",
                "timeout": 30,
                "compression": Compression.Gzip,
            }

    return (
        (OTLPSpanExporter, kwargs("traces")),
        (OTLPMetricExporter, kwargs("metrics")),
        (OTLPLogExporter, kwargs("logs")),
    )


def recording(cls, signal, results):
    """A subclass of exporter `cls` that records every export's outcome under `signal`."""

    class Recording(cls):
        def export(self, batch, *args, **kwargs):
            result = super().export(batch, *args, **kwargs)
            results[signal].append(getattr(result, "name", str(result)))
            return result

    return Recording


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["grpc", "http"], required=True)
    parser.add_argument("--endpoint", required=True, help="host:port of the OTLP receiver")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    n = args.count
    if n % 20 != 0:
        sys.exit("--count must be a multiple of 20")
    warnings.simplefilter("ignore", DeprecationWarning)

    results = {"traces": [], "metrics": [], "logs": []}
    (span_cls, span_kw), (metric_cls, metric_kw), (log_cls, log_kw) = exporters(args.transport, args.endpoint)
    resource = Resource.create(
        {
            "service.name": "outpost-sdk-roundtrip",
            "outpost.test.run": args.run_id,
            "outpost.test.transport": args.transport,
        }
    )

    # Traces
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            recording(span_cls, "traces", results)(**span_kw),
            max_queue_size=4 * n,
            max_export_batch_size=256,
        )
    )
    tracer = tracer_provider.get_tracer("outpost.integration.traces", "1.2.3")

    def span_attrs(i, t):
        return {
            "span.index": i,
            "span.even": i % 2 == 0,
            "span.ratio": i / 8,
            "span.label": f"label-{i}",
            "span.trace": t,
        }

    for t in range(n // 4):
        i = 4 * t
        with tracer.start_as_current_span(f"root-{i}", kind=SpanKind.SERVER, attributes=span_attrs(i, t)) as root:
            root.add_event("root.started", {"event.index": i})
            with tracer.start_as_current_span(f"child-{i + 1}", attributes=span_attrs(i + 1, t)):
                with tracer.start_as_current_span(f"grandchild-{i + 2}", attributes=span_attrs(i + 2, t)) as g:
                    g.set_status(Status(StatusCode.ERROR, f"boom-{i + 2}"))
            with tracer.start_as_current_span(f"sibling-{i + 3}", kind=SpanKind.CLIENT, attributes=span_attrs(i + 3, t)):
                pass

    # Metrics: the periodic export is disabled (math.inf), so the one force_flush below is the one
    # collection and each point is exported exactly once.
    reader = PeriodicExportingMetricReader(
        recording(metric_cls, "metrics", results)(**metric_kw),
        export_interval_millis=math.inf,
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meter_provider.get_meter("outpost.integration.metrics", "4.5.6")
    counter = meter.create_counter("outpost.test.requests", unit="1", description="requests by index")
    for i in range(6 * n // 10):
        counter.add(i + 1, {"point.index": i})
    histogram = meter.create_histogram("outpost.test.latency", unit="ms", description="latency by index")
    for i in range(3 * n // 10):
        histogram.record(i * 0.5, {"point.index": i})
    updown = meter.create_up_down_counter("outpost.test.depth", description="depth by index")
    for i in range(n // 10):
        updown.add(-i, {"point.index": i})

    # Logs, through the standard logging module as an application would.
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(
            recording(log_cls, "logs", results)(**log_kw),
            max_queue_size=4 * n,
            max_export_batch_size=256,
        )
    )
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=logger_provider)
    log = logging.getLogger("outpost.integration.logs")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)
    levels = [logging.INFO, logging.WARNING, logging.ERROR, logging.DEBUG]
    for i in range(n):
        log.log(
            levels[i % 4],
            "log message %d",
            i,
            extra={"log.index": i, "log.even": i % 2 == 0, "log.ratio": i / 4},
        )

    flushed = {
        "traces": tracer_provider.force_flush(60_000),
        "logs": logger_provider.force_flush(60_000),
        "metrics": meter_provider.force_flush(60_000),
    }
    tracer_provider.shutdown()
    logger_provider.shutdown()
    meter_provider.shutdown()

    summary = {"results": results, "flushed": flushed}
    print(json.dumps(summary))
    ok = all(flushed.values()) and all(
        results[s] and all(r == "SUCCESS" for r in results[s]) for s in results
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
