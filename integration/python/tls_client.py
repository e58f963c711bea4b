"""TLS clients for integration/tests/tls.rs: the real OpenTelemetry SDK over TLS / mTLS, and a plain
`ssl` probe that reports which certificate a server presented and how a request was answered.

  sdk    send --count spans with the SDK's OTLP exporter (grpc or http), TLS options as the SDK takes
         them; prints {"ok": spans exported, "failed": spans refused}.
  stream like sdk, but keeps sending one batch every --interval seconds for --seconds, each batch
         flushed; prints the same JSON.
  syslog --count RFC 5424 lines over one TLS connection (syslog over TLS, RFC 5425 framing by
         newline); prints {"sent": lines written, "error": text or null}.
  probe  one TLS connection (optionally with a client certificate) and one OTLP/HTTP POST of an empty
         request; prints {"handshake": bool, "sha256": fingerprint of the server certificate,
         "status": HTTP status or null, "error": text or null}.
"""

import argparse
import hashlib
import http.client
import json
import ssl
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Recording(SpanExporter):
    """Counts the spans the real exporter reported as exported or failed."""

    def __init__(self, inner):
        self.inner = inner
        self.ok = 0
        self.failed = 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result == SpanExportResult.SUCCESS:
            self.ok += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def exporter(args):
    headers = {}
    if args.token:
        headers["authorization"] = "Bearer " + args.token
    if args.transport == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        creds = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=read(args.key) if args.key else None,
            certificate_chain=read(args.cert) if args.cert else None,
        )
        return OTLPSpanExporter(
            endpoint=args.endpoint,
            credentials=creds,
            headers=headers or None,
            timeout=5,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint="https://" + args.endpoint + "/v1/traces",
        certificate_file=args.ca,
        client_key_file=args.key,
        client_certificate_file=args.cert,
        headers=headers or None,
        timeout=5,
    )


def send(args, batches, per_batch, interval):
    rec = Recording(exporter(args))
    provider = TracerProvider(resource=Resource.create({"service.name": "tls-test", "run": args.run}))
    provider.add_span_processor(BatchSpanProcessor(rec, max_export_batch_size=512, schedule_delay_millis=50))
    tracer = provider.get_tracer("tls-test")
    n = 0
    for _ in range(batches):
        for _ in range(per_batch):
            with tracer.start_as_current_span("span-%d" % n):
                pass
            n += 1
        provider.force_flush()
        if interval:
            time.sleep(interval)
    provider.shutdown()
    print(json.dumps({"ok": rec.ok, "failed": rec.failed}))


def probe(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    host, port = args.endpoint.rsplit(":", 1)
    out = {"handshake": False, "sha256": None, "status": None, "error": None}
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.connect()
        out["handshake"] = True
        out["sha256"] = hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest()
        headers = {"Content-Type": "application/x-protobuf"}
        if args.token:
            headers["Authorization"] = "Bearer " + args.token
        conn.request("POST", "/v1/traces", body=b"", headers=headers)
        out["status"] = conn.getresponse().status
    except Exception as e:  # the probe reports every failure; the test decides what it means
        out["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()
    print(json.dumps(out))


def syslog(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    host, port = args.endpoint.rsplit(":", 1)
    out = {"sent": 0, "error": None}
    try:
        import socket

        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                for i in range(args.count):
                    line = "<134>1 2026-01-02T03:04:05Z edge app 42 - - tls message %d\n" % i
                    tls.sendall(line.encode())
                    out["sent"] += 1
                tls.unwrap()
    except Exception as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["sdk", "stream", "probe", "syslog"])
    p.add_argument("--transport", choices=["grpc", "http"], default="http")
    p.add_argument("--endpoint", required=True, help="host:port")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--token")
    p.add_argument("--run", default="tls")
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--interval", type=float, default=0.1)
    args = p.parse_args()
    if args.mode == "probe":
        probe(args)
    elif args.mode == "syslog":
        syslog(args)
    elif args.mode == "sdk":
        send(args, 1, args.count, 0)
    else:
        batches = max(1, int(args.seconds / args.interval))
        send(args, batches, args.count, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
