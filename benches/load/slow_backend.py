#!/usr/bin/env python3
"""A deliberately slow model server: answers every request with the same v2
inference JSON as the nginx backend, after sleeping SECONDS (default 2).

Used as the shadow candidate in run.sh's slow-candidate row.
Usage: slow_backend.py PORT [SECONDS]   (stdlib only)
"""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = (b'{"model_name":"m","id":"1","outputs":[{"name":"predict","datatype":"FP32",'
          b'"shape":[1,3],"data":[0.1,0.7,0.2]}]}')


class Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real model server

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(DELAY)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    do_GET = do_POST

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # switchyard may open up to max_in_flight connections at once


if __name__ == "__main__":
    port = int(sys.argv[1])
    DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    Server(("127.0.0.1", port), Slow).serve_forever()
