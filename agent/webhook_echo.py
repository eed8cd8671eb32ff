"""A tiny webhook receiver for trying the agent locally: verifies signatures and prints alerts.

``python -m agent.webhook_echo --port 9099 --secret change-me`` (what ``make run`` starts next to
the agent, so the embedded default's webhook sink has somewhere to deliver).
"""

from __future__ import annotations

import argparse
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from agent.alerts import _dollars
from sinks.webhook import verify


def describe(doc: dict[str, Any]) -> str:
    """One line per delivery: status (an escalation says so), severity, id, dollars, summary.

    >>> describe({"status": "resolved", "severity": "error", "id": "a1b2", "impact_usd": 983.2,
    ...           "summary": "[idle_gpu] resolved: ..."})
    'resolved error a1b2 episode impact $983.20: [idle_gpu] resolved: ...'
    >>> describe({"status": "firing", "severity": "critical", "id": "a1b2", "impact_usd": 98.0,
    ...           "escalated": True, "previous_severity": "error", "summary": "escalated to critical: ..."})
    'firing (escalated from error) critical a1b2 impact $98.00: escalated to critical: ...'
    """
    status = str(doc.get("status"))
    if doc.get("escalated"):
        status += f" (escalated from {doc.get('previous_severity')})"
    impact = doc.get("impact_usd")
    money = "n/a" if impact is None else _dollars(impact)
    which = "episode impact" if doc.get("status") == "resolved" else "impact"
    return f"{status} {doc.get('severity')} {str(doc.get('id', ''))[:12]} {which} {money}: {doc.get('summary', '')}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agent.webhook_echo")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9099)
    ap.add_argument("--secret", default="change-me")
    args = ap.parse_args(argv)
    secret = args.secret.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            ts = self.headers.get("X-FinOps-Timestamp", "0")
            ok = verify(secret, ts, body, self.headers.get("X-FinOps-Signature", ""))
            self.send_response(202 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            try:
                what = describe(orjson.loads(body))
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                what = f"{len(body)} bytes"
            sys.stderr.write(f"webhook-echo: {'signature ok' if ok else 'BAD SIGNATURE'}: {what}\n")

        def log_message(self, format: str, *a: Any) -> None:  # noqa: A002
            return None

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
