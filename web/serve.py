"""Serves this folder (the page, LiteRT.js's wasm files and the int8 model) on this machine.

    python3 web/serve.py [--port 8000]

Standard library only, so the page can be tried without the Python training stack. Any
static file server works as well; this one only adds clear errors and quiet logs.
"""

import argparse
import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Handler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        if args and str(args[1])[:1] in "45":  # only failed requests (a missing file, ...)
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description="Serve the tinymnist page on http://127.0.0.1:PORT/.")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    args = parser.parse_args()
    missing = [p for p in ("node_modules/@litertjs/core/wasm", "model_int8.tflite") if not (HERE / p).exists()]
    if missing:
        print(f"error: {HERE / missing[0]} is missing; run `make demo` (it runs `npm ci` in web/)", file=sys.stderr)
        return 6
    try:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), functools.partial(Handler, directory=str(HERE)))
    except OSError as error:
        reason = error.strerror or error
        print(f"error: cannot listen on 127.0.0.1:{args.port} ({reason}); choose another PORT=", file=sys.stderr)
        return 4  # "busy", as in the app's exit codes
    print(f"tinymnist in the browser: http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
