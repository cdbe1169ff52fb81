#!/usr/bin/env python3
"""An OTLP trace receiver for the tests (tests/cluster/run.sh, tests/e2e/otlp.py): decodes each export
(opentelemetry-proto from PyPI) and appends one JSON line per span to the file given,
with the exporting instance (`service.instance.id`). Prints its port, then serves
OTLP/HTTP, or OTLP/gRPC with --grpc (grpcio from PyPI: the TraceService of
opentelemetry-proto's trace_service_pb2_grpc).

    otlp_receiver.py SPANS.jsonl [--grpc]
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

OUT = open(sys.argv[1], "a", buffering=1)
LOCK = threading.Lock()


def record(req):
    """Writes the spans of an ExportTraceServiceRequest."""
    with LOCK:
        for rs in req.resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    OUT.write(json.dumps({
                        "instance": attrs.get("service.instance.id", ""),
                        "service": attrs.get("service.name", ""),
                        "trace": s.trace_id.hex(), "span": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(), "name": s.name,
                        "attributes": {a.key: a.value.string_value for a in s.attributes},
                    }) + "\n")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.ParseFromString(body)
        record(req)
        out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


if "--grpc" in sys.argv[2:]:
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            record(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()
else:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
