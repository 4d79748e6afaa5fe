"""A Hugging Face hub stand-in on loopback, for `earshot models pull` tests (the real hub is unreachable).

It answers the requests huggingface_hub makes for a snapshot download (`HF_ENDPOINT` pointed
here): model info, the recursive tree listing, and HEAD/GET of `resolve/<commit>/<path>` with
Range support. Repositories can be gated (a bearer token is required), a file can be cut off
mid-transfer once (the client should resume it with a Range request), and a file can fail with
500 a number of times (the pull fails; running it again should fetch only what is missing).
Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    token: str | None = None  # gated: requests must carry `Authorization: Bearer <token>`
    commit: str = ""

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1()
            for path in sorted(self.files):
                digest.update(path.encode() + b"\0" + self.files[path])
            self.commit = digest.hexdigest()


@dataclass
class Recorded:
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)  # "repo/path": first GET sends half, then drops
    fail: dict[str, int] = field(default_factory=dict)  # "repo/path": answer 500 this many times
    requests: list[Recorded] = field(default_factory=list)

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def downloads(self, repo: str, path: str) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.method == "GET" and r.path.endswith(f"/{repo}/resolve/{self.repos[repo].commit}/{path}")
        ]


_INFO = re.compile(r"/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?")
_TREE = re.compile(r"/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)")
_RESOLVE = re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def _route(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.fake.requests.append(
            Recorded(self.command, path, self.headers.get("Range"), self.headers.get("Authorization"))
        )
        if m := _TREE.fullmatch(path):
            repo = self._repo(m["repo"], m["rev"])
            if repo is not None:
                tree = [
                    {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for p, b in sorted(repo.files.items())
                ]
                self._json(tree, head)
        elif m := _INFO.fullmatch(path):
            repo = self._repo(m["repo"], m["rev"] or "main")
            if repo is not None:
                siblings = [{"rfilename": p} for p in sorted(repo.files)]
                self._json({"id": m["repo"], "sha": repo.commit, "siblings": siblings}, head)
        elif m := _RESOLVE.fullmatch(path):
            repo = self._repo(m["repo"], m["rev"])
            if repo is not None:
                self._file(m["repo"], repo, m["path"], head)
        else:
            self._error(404, "RepoNotFound", "no such route")

    def _repo(self, name: str, rev: str) -> FakeRepo | None:
        repo = self.fake.repos.get(name)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {name} not found")
            return None
        if repo.token is not None and self.headers.get("Authorization") != f"Bearer {repo.token}":
            self._error(401, "GatedRepo", f"Access to model {name} is restricted")
            return None
        if rev not in ("main", repo.commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return repo

    def _file(self, name: str, repo: FakeRepo, path: str, head: bool) -> None:
        data = repo.files.get(path)
        if data is None:
            self._error(404, "EntryNotFound", f"{path} not found")
            return
        key = f"{name}/{path}"
        if not head and self.fake.fail.get(key, 0) > 0:
            self.fake.fail[key] -= 1
            self._error(500, None, "internal error")
            return
        start = 0
        if (rng := self.headers.get("Range")) and (m := re.fullmatch(r"bytes=(\d+)-", rng)):
            start = int(m[1])
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if head:
            return
        if key in self.fake.cut_once and start == 0:
            self.fake.cut_once.discard(key)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _json(self, payload, head: bool) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
