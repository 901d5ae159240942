"""The demo's web app: a key-value store over HTTP, kept in MariaDB and cached in Redis.

  POST /kv/KEY   (body: the value)  stores it in MariaDB, then in Redis; 201 and JSON
  GET  /kv/KEY                      {"key", "db": MariaDB's value, "cache": Redis's value}; 404
                                    when MariaDB has no such key; 503 when a server is unreachable
  GET  /health                      200 "ok" (the app itself, no servers asked)

Each request opens its own connections (a replaced server is found again by name on the next
request, with a 1 s connect timeout), so a restarted or replaced database costs failed requests
only while it is down. Servers by name: DB_HOST (db), REDIS_HOST (cache); MariaDB user, password
and database: DB_USER (app), DB_PASSWORD (app), DB_NAME (demo). Listens on PORT (8080).
Standard library plus python3-pymysql and python3-redis (Debian packages).
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pymysql
import redis

DB = dict(
    host=os.environ.get("DB_HOST", "db"),
    user=os.environ.get("DB_USER", "app"),
    password=os.environ.get("DB_PASSWORD", "app"),
    database=os.environ.get("DB_NAME", "demo"),
    connect_timeout=1,
    read_timeout=5,
    write_timeout=5,
)
REDIS_HOST = os.environ.get("REDIS_HOST", "cache")
MAX_VALUE = 64 * 1024


def cache():
    return redis.Redis(host=REDIS_HOST, socket_connect_timeout=1, socket_timeout=5)


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = (json.dumps(body) if not isinstance(body, str) else body).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def key(self):
        if not self.path.startswith("/kv/") or len(self.path) == 4 or len(self.path) > 200:
            self.reply(404, {"error": "use /kv/KEY (at most 196 characters)"})
            return None
        return self.path[4:]

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, "ok")
        key = self.key()
        if key is None:
            return
        try:
            with pymysql.connect(**DB) as conn, conn.cursor() as cur:
                cur.execute("SELECT v FROM kv WHERE k = %s", (key,))
                row = cur.fetchone()
            cached = cache().get(key)
        except (pymysql.err.MySQLError, redis.exceptions.RedisError, OSError) as e:
            return self.reply(503, {"error": f"{type(e).__name__}: {e}"})
        if row is None:
            return self.reply(404, {"error": f"no key {key!r}"})
        self.reply(200, {"key": key, "db": row[0], "cache": cached and cached.decode()})

    def do_POST(self):
        key = self.key()
        if key is None:
            return
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_VALUE:
            return self.reply(413, {"error": f"values are at most {MAX_VALUE} bytes"})
        value = self.rfile.read(n).decode("utf-8", "replace")
        try:
            with pymysql.connect(**DB, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO kv (k, v) VALUES (%s, %s) ON DUPLICATE KEY UPDATE v = VALUES(v)",
                    (key, value),
                )
            cache().set(key, value)
        except (pymysql.err.MySQLError, redis.exceptions.RedisError, OSError) as e:
            return self.reply(503, {"error": f"{type(e).__name__}: {e}"})
        self.reply(201, {"key": key, "stored": value})

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"demo app on :{port}, MariaDB at {DB['host']}, Redis at {REDIS_HOST}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
