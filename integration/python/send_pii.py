"""Sends telemetry carrying seeded PII and secrets with the OpenTelemetry Python SDK (OTLP/gRPC).

Used by integration/tests/redaction.rs, which checks that none of the seeded values comes out of outpost
(exported files, the disk queue, outpost's own log). The seeds arrive as a JSON object in --seeds; each
is placed where real applications leak such things:

resource  service.name, outpost.test.run (the run id: not PII, the test's positive control) and
          owner.email = email.
traces    --count spans named "checkout {i}", every 5th named "charge {card}", with attributes
          user.email, payment.card, user.ssn, http.request.header.authorization ("Bearer {jwt}"),
          db.connection_string (a URL with {password}), url.full (with access_token={token}), and an
          event "payment" with attribute iban and a status message naming phone.
metrics   a counter "outpost.test.orders" with one point per i in 0..--count // 10, attributes
          point.index, customer.email and card.
logs      --count records: bodies "user {email} paid with card {card}" (string) and, every 4th, a map
          body {"customer": {"email": email, "cards": [card, "none"]}, "note": "ssn {ssn}"}; attributes
          log.index, user.ssn and url.full.

The script prints a JSON summary and exits 1 if any export did not succeed.
"""

import argparse
import json
import logging
import math
import sys
import warnings

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode


def recording(cls, signal, results):
    class Recording(cls):
        def export(self, batch, *args, **kwargs):
            result = super().export(batch, *args, **kwargs)
            results[signal].append(getattr(result, "name", str(result)))
            return result

    return Recording


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--seeds", required=True, help="JSON object of seeded values")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    seeds = json.loads(args.seeds)
    n = args.count
    warnings.simplefilter("ignore", DeprecationWarning)
    kw = {"endpoint": f"http://{args.endpoint}", "insecure": True, "timeout": 30}
    results = {"traces": [], "metrics": [], "logs": []}
    resource = Resource.create(
        {
            "service.name": "outpost-redaction-test",
            "outpost.test.run": args.run_id,
            "owner.email": seeds["email"],
        }
    )

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(recording(OTLPSpanExporter, "traces", results)(**kw), max_queue_size=max(4 * n, 2048))
    )
    tracer = tracer_provider.get_tracer("outpost.integration.redaction")
    for i in range(n):
        name = f"charge {seeds['card']}" if i % 5 == 0 else f"checkout {i}"
        attrs = {
            "span.index": i,
            "user.email": seeds["email"],
            "payment.card": seeds["card"],
            "user.ssn": seeds["ssn"],
            "http.request.header.authorization": f"Bearer {seeds['jwt']}",
            "db.connection_string": f"postgres://app:{seeds['password']}@db.internal:5432/orders",
            "url.full": f"https://api.example.com/v1/callback?page=2&access_token={seeds['token']}",
        }
        with tracer.start_as_current_span(name, attributes=attrs) as span:
            span.add_event("payment", {"iban": seeds["iban"]})
            span.set_status(Status(StatusCode.ERROR, f"declined, call {seeds['phone']}"))

    reader = PeriodicExportingMetricReader(
        recording(OTLPMetricExporter, "metrics", results)(**kw), export_interval_millis=math.inf
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    orders = meter_provider.get_meter("outpost.integration.redaction").create_counter("outpost.test.orders")
    for i in range(n // 10):
        orders.add(1, {"point.index": i, "customer.email": seeds["email"], "card": seeds["card"]})

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(recording(OTLPLogExporter, "logs", results)(**kw), max_queue_size=max(4 * n, 2048))
    )
    logger = logging.getLogger("outpost.integration.redaction")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=logger_provider))
    for i in range(n):
        extra = {"log.index": i, "user.ssn": seeds["ssn"], "url.full": f"https://shop.example.com/reset?token={seeds['token']}"}
        if i % 4 == 0:
            body = {"customer": {"email": seeds["email"], "cards": [seeds["card"], "none"]}, "note": f"ssn {seeds['ssn']}"}
            logger.warning(body, extra=extra)
        else:
            logger.info("user %s paid with card %s", seeds["email"], seeds["card"], extra=extra)

    ok = tracer_provider.force_flush(60_000)
    ok = meter_provider.force_flush(60_000) and ok
    ok = logger_provider.force_flush(60_000) and ok
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()
    failed = {s: [r for r in rs if r != "SUCCESS"] for s, rs in results.items()}
    print(json.dumps({"flushed": ok, "exports": {s: len(rs) for s, rs in results.items()}, "failed": failed}))
    if not ok or any(failed.values()) or not all(results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
