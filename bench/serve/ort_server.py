"""The onnxruntime side of bench/serve/run.sh: one `InferenceSession` per task (the export's
`<task>.onnx`, one intra-op and one inter-op thread) behind a minimal HTTP/1.1 server from the
standard library (a thread per keep-alive connection), answering the same route and body as
`gtk serve`: `POST /v1/tasks/{task}/predict` with a float32 `.npy` body, a float32 `.npy` back.
It prints `listening on http://HOST:PORT` once the sessions are loaded.

usage: python3 ort_server.py EXPORT_DIR TASK[,TASK...] [PORT]
"""
import io
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime as ort


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def main():
    folder, tasks = sys.argv[1], sys.argv[2].split(",")
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    sessions = {t: session(f"{folder}/{t}.onnx") for t in tasks}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; without TCP_NODELAY the second waits for the
        # client's delayed ACK (40 ms on Linux).
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def answer(self, status, body, kind="application/x-npy"):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(n)
            parts = self.path.strip("/").split("/")
            if len(parts) != 4 or parts[:2] != ["v1", "tasks"] or parts[3] != "predict" or parts[2] not in sessions:
                return self.answer(404, b"no such task\n", "text/plain")
            try:
                x = np.load(io.BytesIO(body), allow_pickle=False).astype(np.float32, copy=False)
                (y,) = sessions[parts[2]].run(["output"], {"input": x})
            except Exception as e:  # a bad body is the client's; the server goes on
                return self.answer(400, str(e).encode(), "text/plain")
            out = io.BytesIO()
            np.save(out, y.astype(np.float32, copy=False))
            self.answer(200, out.getvalue())

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
