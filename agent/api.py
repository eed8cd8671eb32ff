"""The agent's API (``/api/v1/...``) on its HTTP server: silences (create, list, expire) and feedback on alerts.

Every request carries ``Authorization: Bearer <token>`` (``http.api_token`` or ``http.api_token_file``, a secret):
without it the answer is 401, with a wrong one 403; with no token configured the API refuses everything (403):
nothing unauthenticated can change what pages. Answers never carry the token.

- ``GET /api/v1/silences``: every silence (config and API), with its status (pending, active, expired).
- ``POST /api/v1/silences``: ``{"matchers": ["team=research"], "ends_at": "..." | "duration_seconds": N,
  "comment": "...", "created_by": "...", "starts_at"?: "...", "planned_change"?: bool}`` → 201 and the silence.
- ``DELETE /api/v1/silences/<id>``: expire it now → 200 and the silence (404: no such silence; 409: one from the
  config file).
- ``POST /api/v1/alerts/<id>/feedback``: ``{"verdict": "expected", "comment": "...", "created_by": "..."}``: the open
  alert is a planned change or the new normal: it is resolved (one notification saying who said so) and its series'
  model takes the level as the new usual, without alerting on it again (kept with the model's state).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson

from agent.silences import Silences, new_silence

log = logging.getLogger(__name__)

JSON = "application/json"
PREFIX = "/api/v1"


def _err(code: int, message: str) -> tuple[int, bytes, str]:
    return code, orjson.dumps({"error": message}), JSON


class Api:
    def __init__(self, silences: Silences, token: str | None, on_change: Any = None, feedback: Any = None):
        self.silences = silences
        self._token = token.encode() if token else None
        self.on_change = on_change  # told after a silence is added or expired (the notifier re-checks)
        self.feedback = feedback  # (alert id, verdict, by, comment) → True / False (no such alert) / None (busy)

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, bytes, str]:
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return _err(401, "a bearer token is required (Authorization: Bearer <http.api_token>)")
        if self._token is None:
            return _err(403, "the API is off: set http.api_token or http.api_token_file")
        if not hmac.compare_digest(auth[7:].strip().encode(), self._token):
            return _err(403, "wrong token")
        path = path.split("?", 1)[0].rstrip("/")
        now = self.silences.clock()
        if path == f"{PREFIX}/silences":
            if method == "GET":
                return 200, orjson.dumps([s.to_json(now) for s in self.silences.all()]), JSON
            if method == "POST":
                try:
                    raw = orjson.loads(body or b"null")
                    silence = new_silence(raw, self.silences.clock)
                except orjson.JSONDecodeError:
                    return _err(400, "the body is not JSON")
                except ValueError as exc:
                    return _err(400, str(exc))
                self.silences.add(silence)
                log.info(
                    "silence %s created by %s: %s until %s (%s)",
                    silence.id,
                    silence.created_by,
                    ", ".join(silence.matchers),
                    silence.to_json(silence.starts_at)["ends_at"],
                    silence.comment,
                )
                if self.on_change is not None:
                    self.on_change()
                return 201, orjson.dumps(silence.to_json(self.silences.clock())), JSON
            return _err(405, f"{method} is not allowed here (GET, POST)")
        if path.startswith(f"{PREFIX}/silences/"):
            if method != "DELETE":
                return _err(405, f"{method} is not allowed here (DELETE)")
            sid = path.rsplit("/", 1)[1]
            try:
                ended = self.silences.expire(sid)
            except PermissionError as exc:
                return _err(409, str(exc))
            if ended is None:
                return _err(404, f"no silence {sid}")
            log.info("silence %s expired through the API", sid)
            if self.on_change is not None:
                self.on_change()
            return 200, orjson.dumps(ended.to_json(self.silences.clock())), JSON
        if path.startswith(f"{PREFIX}/alerts/") and path.endswith("/feedback"):
            if method != "POST":
                return _err(405, f"{method} is not allowed here (POST)")
            return self._feedback(path[len(PREFIX) + 8 : -len("/feedback")], body)
        return _err(404, "not found")

    def _feedback(self, alert_id: str, body: bytes) -> tuple[int, bytes, str]:
        try:
            raw = orjson.loads(body or b"null")
        except orjson.JSONDecodeError:
            return _err(400, "the body is not JSON")
        if not isinstance(raw, dict):
            return _err(400, "the body must be a JSON object")
        errors = []
        if raw.get("verdict") != "expected":
            errors.append("verdict: 'expected' (the incident is a planned change or the new normal)")
        for key in ("comment", "created_by"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                errors.append(f"{key}: required")
        if errors:
            return _err(400, "; ".join(errors))
        if self.feedback is None:
            return _err(503, "feedback is not available")
        done = self.feedback(alert_id, "expected", raw["created_by"].strip(), raw["comment"].strip())
        if done is None:
            return _err(503, "the pipeline is busy: try again")
        if not done:
            return _err(404, f"no open alert {alert_id}")
        return 200, orjson.dumps({"id": alert_id, "verdict": "expected", "resolved": True}), JSON
