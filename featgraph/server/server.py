"""`featgraph serve`: the explorer over HTTP, on the standard library's ThreadingHTTPServer (no web framework:
a handful of JSON routes and eight static files need none, and nothing is added to install).

Safe by default: it binds 127.0.0.1 (another host is the caller's choice, and warned about); it only reads;
it sends no CORS header and refuses requests whose Host or Origin is not the server itself (another site's
page cannot read it, nor reach it by DNS rebinding); POST takes only application/json; the page's
Content-Security-Policy lets it load nothing from outside the server; Neo4j credentials stay in the process.
"""

from __future__ import annotations

import json
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from featgraph.errors import BadInput, BadValue, FeatgraphError, FeatgraphWarning, MissingValue
from featgraph.server.explorer import Explorer

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_BODY = 1 << 20  # bytes of a POST body
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class Server:
    """A running explorer: `url`, `close()`. Made by `start`; `serve_forever` blocks until closed."""

    def __init__(self, httpd: ThreadingHTTPServer, explorer: Explorer, host: str):
        self.httpd, self.explorer, self.host = httpd, explorer, host
        port = httpd.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.close()

    def start_thread(self) -> Server:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()
        self.explorer.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start(run, neo4j: bool = False, host: str = "127.0.0.1", port: int = 8765, timeout: float = 10.0) -> Server:
    """Open the run's store and bind `host`:`port` (0: any free port); serve with `serve_forever()` or
    `start_thread()`. A host other than the loopback is warned about: anyone who can reach it reads the graph."""
    if not 0 <= int(port) <= 65535:
        raise BadInput(f"port {port} is not a TCP port: give 1-65535 (0 picks a free one)")
    if host not in LOOPBACK:
        warnings.warn(f"serving on {host}: anyone who can reach port {port} there can read this run's graph "
                      "(the server has no login); leave --host out to serve on 127.0.0.1 only", FeatgraphWarning, stacklevel=2)
    explorer = Explorer(run, neo4j=neo4j, timeout=timeout)
    try:
        explorer.warm()
        httpd = _HTTPServer((host, int(port)), _handler(explorer, host))
    except OSError as e:
        explorer.close()
        raise BadInput(f"cannot listen on {host}:{port} ({e.strerror or e}): pick another --port") from None
    return Server(httpd, explorer, host)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler):
        import socket

        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


def _handler(explorer: Explorer, host: str):
    from featgraph.render import explorer as page

    index = page.served_page().encode()
    port_box: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        server_version = "featgraph"
        sys_version = ""
        protocol_version = "HTTP/1.1"
        timeout = 60  # seconds a connection may sit idle

        def log_message(self, format: str, *args: Any) -> None:  # the library never prints
            pass

        # ------------------------------------------------------------ checks

        def _allowed(self) -> bool:
            """Only requests addressed to this server: its Host (DNS rebinding), and its Origin when one is sent."""
            if not port_box:
                port_box.append(self.server.server_address[1])
            port = port_box[0]
            names = {f"{h}:{port}" for h in (*LOOPBACK, "[::1]")} if host in LOOPBACK else None
            got = (self.headers.get("Host") or "").lower()
            if names is not None and got not in names:
                return False
            origin = self.headers.get("Origin")
            if origin is None:
                return True
            return origin.lower() in ({f"http://{n}" for n in names} if names is not None else {f"http://{got}"})

        # ------------------------------------------------------------ answers

        def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, data: dict) -> None:
            self._send(status, json.dumps(data, allow_nan=False, default=str).encode(), "application/json; charset=utf-8")

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": message})

        def _run(self, fn, *args, **kwargs) -> None:
            try:
                result = fn(*args, **kwargs)
            except FeatgraphError as e:  # BadInput, a refused or failed query, a timeout: the message says which
                self._error(400, str(e))
            except (TypeError, ValueError) as e:
                self._error(400, f"bad request: {e}")
            except Exception as e:  # one request's failure must not stop the server
                self._error(500, f"internal error ({e.__class__.__name__}): {str(e).splitlines()[0] if str(e) else ''}")
            else:
                if isinstance(result, tuple):
                    body, ctype, name = result
                    self._send(200, body, ctype, {"Content-Disposition": f'attachment; filename="{name}"'})
                else:
                    self._json(200, result)

        def do_GET(self) -> None:
            if not self._allowed():
                return self._error(403, "this server answers only requests addressed to it (Host/Origin)")
            url = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            path = url.path
            if path in ("/", "/index.html"):
                return self._send(200, index, "text/html; charset=utf-8")
            if path.startswith("/static/"):
                name = path[len("/static/"):]
                if name not in page.ASSETS:
                    return self._error(404, "no such file")
                return self._send(200, page.asset(name), page.ASSETS[name][1])
            routes = {
                "/api/info": lambda: explorer.info(),
                "/api/search": lambda: explorer.search(q.get("q", ""), q.get("limit", 20)),
                "/api/expand": lambda: explorer.expand(q.get("feature", ""), **_ints(q, "only_layer", "only_head", "sign", "max_rank", "limit"),
                                                       **_floats(q, "min_weight"), **_strs(q, "only_circuit")),
                "/api/head": lambda: explorer.head(_need(q, "layer"), _need(q, "head"), q.get("circuit", "QK"), q.get("limit", 60)),
                "/api/tetrads": lambda: explorer.tetrads(_need(q, "layer"), _need(q, "head"), q.get("circuit", "OV"), q.get("limit", 12)),
                "/api/paths": lambda: explorer.paths(q.get("layer", -1), q.get("limit", 20)),
                "/api/connect": lambda: explorer.connect(q.get("feature", ""), q.get("other", ""), q.get("limit", 100)),
            }
            if path not in routes:
                return self._error(404, f"no such page {path}")
            self._run(routes[path])

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_POST(self) -> None:
            if not self._allowed():
                return self._error(403, "this server answers only requests addressed to it (Host/Origin)")
            if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
                return self._error(415, "POST takes application/json")
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                n = -1
            if not 0 < n <= MAX_BODY:
                return self._error(413, f"a request body must be 1 byte to {MAX_BODY:,} bytes")
            try:
                body = json.loads(self.rfile.read(n))
            except (ValueError, UnicodeDecodeError):
                return self._error(400, "the body is not JSON")
            if not isinstance(body, dict):
                return self._error(400, "the body must be a JSON object")
            path = urlsplit(self.path).path
            if path == "/api/query":
                params = body.get("params") or {}
                if not isinstance(params, dict):
                    return self._error(400, "params must be an object")
                return self._run(explorer.console, str(body.get("query") or ""), params)
            if path == "/api/export":
                return self._run(explorer.export, str(body.get("format") or ""), body.get("features"))
            self._error(404, f"no such page {path}")

        def do_OPTIONS(self) -> None:  # no CORS preflight is ever granted
            self._error(405, "no cross-origin requests")

        def do_PUT(self) -> None:
            self._error(405, "read-only")

        do_DELETE = do_PATCH = do_PUT

    return Handler


def _need(q: dict, name: str) -> int:
    if name not in q or q[name] == "":
        raise MissingValue(name, "a whole number")
    return _int(name, q[name])


def _int(name: str, v) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise BadValue(name, v, "must be a whole number") from None


def _ints(q: dict, *names: str) -> dict[str, int]:
    return {n: _int(n, q[n]) for n in names if q.get(n, "") != ""}


def _floats(q: dict, *names: str) -> dict[str, float]:
    out = {}
    for n in names:
        if q.get(n, "") != "":
            try:
                out[n] = float(q[n])
            except ValueError:
                raise BadValue(n, q[n], "must be a number") from None
    return out


def _strs(q: dict, *names: str) -> dict[str, str]:
    return {n: q[n] for n in names if q.get(n, "") != ""}
