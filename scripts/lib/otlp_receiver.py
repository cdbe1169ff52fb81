#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for the tests (tests/cluster/run.sh, tests/e2e/otlp.py): decodes each export
(opentelemetry-proto from PyPI) and appends one JSON line per span to the file given,
with the exporting instance (`service.instance.id`). Prints its port, then serves.

    otlp_receiver.py SPANS.jsonl
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

OUT = open(sys.argv[1], "a", buffering=1)
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.ParseFromString(body)
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
        out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
