"""A small Hugging Face hub on 127.0.0.1, for running the real `huggingface_hub` client in tests.

It serves repos built from local directories on the endpoints the client uses
(huggingface_hub 2.4):

* ``GET /api/models/{repo}[/revision/{rev}]`` — model info (`model_info`); with
  ``?blobs=True`` (``files_metadata=True``) each sibling has ``size``, ``blobId`` and, for
  LFS files, ``lfs: {size, sha256, pointerSize}``.
* ``GET /api/models/{repo}/tree/{rev}[/{path}]`` — the tree listing `snapshot_download`
  reads (one page, no ``Link`` header).
* ``HEAD|GET /{repo}/resolve/{rev}/{path}`` — a regular file answers 200 with ``ETag``
  (its git blob id), ``X-Repo-Commit`` and ``Content-Length``; an LFS file (``*.safetensors``
  and anything over 10 MB) answers 302 to the second port (the "CDN", another origin, as on
  the real hub) with ``X-Linked-Etag`` (its sha256), ``X-Linked-Size`` and ``Location``.
  Both honour ``Range`` (206 with ``Content-Range``).

Errors follow the hub: a missing repo is 404 and a private one 401, both with
``X-Error-Code: RepoNotFound``; gated files 403 ``GatedRepo``; an unknown revision 404
``RevisionNotFound``; a missing file 404 ``EntryNotFound``; a disabled repo 403 with the
hub's "disabled" message. `fail(status, ...)` injects 429/5xx (or anything) on demand, a
stall (`delay`) or an answer trickled one byte at a time (`trickle`).

`HubServer(bandwidth=B)` serves file contents at B bytes per second in all (every
connection shares one link), for measuring downloads that overlap other work.

Every request is logged (`log`, `Request`) so tests can assert what was fetched, e.g.
`weight_bytes_served()` — bytes of safetensors files served beyond their header.

Use::

    with HubServer() as hub:
        revision = hub.add_repo("alice/tiny", path)
        store = HuggingFaceStore(endpoint=hub.endpoint, cache_dir=tmp / "cache", token=False)
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlparse

from distil.hub.local import directory_revision, file_sha256

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".onnx", ".pt", ".pth", ".ckpt", ".h5", ".npy", ".npz", ".msgpack")
LFS_THRESHOLD = 10 * 1024 * 1024
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ServedFile:
    name: str
    path: Path
    size: int
    sha256: str
    git_oid: str
    lfs: bool


@dataclass
class RepoState:
    revisions: dict[str, dict[str, ServedFile]] = field(default_factory=dict)
    main: str | None = None
    visibility: str = "public"  # public | private | gated | missing | disabled


@dataclass(frozen=True)
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None
    status: int
    bytes_sent: int
    repo: str | None = None
    filename: str | None = None
    start: int | None = None  # first byte of the body served, for GETs of file content
    blob: str | None = None  # sha256 of the file whose content was served
    authorization: bool = False


@dataclass
class Fault:
    status: int | None  # None: answer normally (after `delay`)
    times: int | None  # None: forever
    matches: Callable[[str, str, str | None], bool]  # (method, path, Range header) -> bool
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds to stall before answering (client timeouts)
    trickle: float = 0.0  # seconds between the bytes of the answer (status line and headers included)


class Throttle:
    """One shared link of `rate` bytes per second: `take(n)` returns when n more bytes may go."""

    def __init__(self, rate: float):
        if not rate > 0:
            raise ValueError(f"bandwidth must be > 0 bytes/s, got {rate!r}")
        self.rate = float(rate)
        self._next = 0.0  # monotonic time at which the link is free again
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            start = max(time.monotonic(), self._next)
            self._next = start + n / self.rate
            done = self._next
        time.sleep(max(0.0, done - time.monotonic()))


def _git_blob_oid(path: Path, size: int) -> str:
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _scan(root: Path) -> dict[str, ServedFile]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink() or not p.is_file():
            continue  # the hub holds no symlinks
        name = p.relative_to(root).as_posix()
        size = p.stat().st_size
        lfs = name.endswith(LFS_SUFFIXES) or size > LFS_THRESHOLD
        files[name] = ServedFile(name, p, size, file_sha256(p), _git_blob_oid(p, size), lfs)
    return files


class HubServer:
    """The hub and its CDN on two 127.0.0.1 ports; see the module docstring."""

    def __init__(self, owner_tokens: dict[str, set[str]] | None = None, bandwidth: float | None = None):
        self.throttle = Throttle(bandwidth) if bandwidth is not None else None
        self.repos: dict[str, RepoState] = {}
        self.log: list[Request] = []
        self.faults: list[Fault] = []
        self.owner_tokens = owner_tokens or {}
        self._blobs: dict[str, ServedFile] = {}
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []
        self.endpoint = ""
        self.cdn = ""

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> "HubServer":
        hub = self._serve("hub")
        cdn = self._serve("cdn")
        self.endpoint = f"http://127.0.0.1:{hub.server_address[1]}"
        self.cdn = f"http://127.0.0.1:{cdn.server_address[1]}"
        return self

    def _serve(self, role: str) -> ThreadingHTTPServer:
        handler = type(f"{role.title()}Handler", (_Handler,), {"hub": self, "role": role})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"hub-server-{role}", daemon=True).start()
        self._servers.append(server)
        return server

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- repos ------------------------------------------------------------------------

    def add_repo(self, repo: str, path: str | Path, main: bool = True) -> str:
        """Serve the directory as a revision of `repo` (the new `main` unless main=False)."""
        path = Path(path)
        revision = directory_revision(path)
        files = _scan(path)
        with self._lock:
            state = self.repos.setdefault(repo, RepoState())
            state.revisions[revision] = files
            if main or state.main is None:
                state.main = revision
            for f in files.values():
                self._blobs[f.sha256] = f
        return revision

    def set_visibility(self, repo: str, visibility: str) -> None:
        if visibility not in ("public", "private", "gated", "missing", "disabled"):
            raise ValueError(f"unknown visibility {visibility!r}")
        self.repos.setdefault(repo, RepoState()).visibility = visibility

    def fail(
        self,
        status: int | None,
        times: int | None = 1,
        path_contains: str = "",
        method: str | None = None,
        headers: dict | None = None,
        delay: float = 0.0,
        ranged: bool | None = None,
        trickle: float = 0.0,
    ) -> None:
        """Answer `status` to the next `times` requests (None: all) whose path contains
        `path_contains` (and whose method is `method`, and that carry a Range header or not
        as `ranged` says, when given). With `delay`, stall that many seconds first; with
        status None, then answer normally. With `trickle`, send the answer one byte every
        `trickle` seconds (a slow hub or proxy: no read ever waits long, the whole never ends)."""

        def matches(m: str, p: str, r: str | None) -> bool:
            return (
                path_contains in p
                and (method is None or m == method)
                and (ranged is None or ranged == (r is not None))
            )

        with self._lock:
            self.faults.append(Fault(status, times, matches, dict(headers or {}), delay, trickle))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    # -- inspection -------------------------------------------------------------------

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    def requests(self, method: str | None = None, filename_suffix: str | None = None) -> list[Request]:
        with self._lock:
            log = list(self.log)
        return [
            r
            for r in log
            if (method is None or r.method == method)
            and (filename_suffix is None or (r.filename or "").endswith(filename_suffix))
        ]

    def weight_bytes_served(self) -> int:
        """Bytes of `*.safetensors` content served that lie past the file's safetensors header."""
        total = 0
        for r in self.requests(method="GET", filename_suffix=".safetensors"):
            if r.start is None or not r.bytes_sent:
                continue
            header_end = self._header_end(r)
            end = r.start + r.bytes_sent
            total += max(0, end - max(r.start, header_end))
        return total

    def _header_end(self, r: Request) -> int:
        f = self._blobs.get(r.blob or "")
        if f is None:
            return 0
        with open(f.path, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8:
            return 0
        return 8 + struct.unpack("<Q", head)[0]

    # -- used by the handler ----------------------------------------------------------

    def _take_fault(self, method: str, path: str, range_header: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, range_header) and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _record(self, request: Request) -> None:
        with self._lock:
            self.log.append(request)


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    role: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet
        pass

    # -- plumbing ---------------------------------------------------------------------

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        path = unquote(url.path)
        self._ctx = dict(repo=None, filename=None, start=None, blob=None)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve:
            self._ctx.update(repo=resolve.group(1), filename=resolve.group(3))
        fault = self.hub._take_fault(method, path, self.headers.get("Range"))
        self._trickle = fault.trickle if fault is not None else 0.0
        try:
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and fault.status is not None:
                self._error(method, fault.status, "Injected fault", headers=fault.headers)
            elif self.role == "cdn":
                self._cdn(method, path)
            else:
                self._hub(method, path, parse_qs(url.query))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, method: str, status: int, headers: dict, body: bytes = b"", file: tuple | None = None) -> None:
        """Send a response; `file` = (path, start, length) streams file bytes as the body."""
        length = file[2] if file is not None else len(body)
        # Logged before the body goes out: the client may have read every byte and moved on
        # before this thread gets back here, and tests read the log right after. Counting
        # the bytes this response *will* carry is also the conservative measure.
        self.hub._record(
            Request(
                server=self.role,
                method=method,
                path=self.path,
                range=self.headers.get("Range"),
                status=status,
                bytes_sent=length if (file is not None and method == "GET") else 0,
                repo=self._ctx["repo"],
                filename=self._ctx["filename"],
                start=self._ctx["start"],
                blob=self._ctx["blob"],
                authorization=bool(self.headers.get("Authorization")),
            )
        )
        if self._trickle:
            return self._send_trickled(method, status, headers, body, file)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if method == "GET":
            if file is not None:
                path, start, n = file
                sent = 0
                block = 1 << 20 if self.hub.throttle is None else 1 << 16  # small blocks: a smooth rate
                with open(path, "rb") as f:
                    f.seek(start)
                    while sent < n:
                        chunk = f.read(min(block, n - sent))
                        if not chunk:
                            break
                        if self.hub.throttle is not None:
                            self.hub.throttle.take(len(chunk))
                        self.wfile.write(chunk)
                        sent += len(chunk)
            else:
                self.wfile.write(body)

    def _send_trickled(self, method: str, status: int, headers: dict, body: bytes, file: tuple | None) -> None:
        """The whole answer, status line first, one byte every `self._trickle` seconds, until it
        is sent or the client hangs up."""
        if file is not None:
            path, start, n = file
            with open(path, "rb") as f:
                f.seek(start)
                body = f.read(n)
        head = f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Content-Length": len(body)}.items()) + "\r\n"
        data = head.encode("latin-1") + (body if method == "GET" else b"")
        self.close_connection = True
        try:
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                time.sleep(self._trickle)
        except OSError:  # the client gave up: what a deadline is for
            pass

    def _json(self, method: str, data, status: int = 200, headers: dict | None = None) -> None:
        body = json.dumps(data).encode()
        self._send(method, status, {"Content-Type": "application/json", **(headers or {})}, body)

    def _error(self, method: str, status: int, message: str, code: str | None = None, headers: dict | None = None):
        h = dict(headers or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = message
        self._json(method, {"error": message}, status, h)

    # -- the hub ----------------------------------------------------------------------

    def _owner(self, repo: str) -> bool:
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        return token is not None and repo in self.hub.owner_tokens.get(token, set())

    def _repo(self, method: str, repo: str, for_files: bool) -> RepoState | None:
        """The repo's state, or None after answering with the error the hub gives."""
        state = self.hub.repos.get(repo)
        visibility = state.visibility if state is not None else "missing"
        if state is None or visibility == "missing" or not state.revisions:
            self._error(method, 404, "Repository not found", "RepoNotFound")
            return None
        if visibility == "private" and not self._owner(repo):
            self._error(method, 401, "Invalid username or password.", "RepoNotFound")
            return None
        if visibility == "disabled":
            self._error(method, 403, "Access to this resource is disabled.")
            return None
        if visibility == "gated" and for_files and not self._owner(repo):
            self._error(method, 403, f"Access to model {repo} is restricted.", "GatedRepo")
            return None
        return state

    def _revision(self, method: str, state: RepoState, revision: str) -> str | None:
        sha = state.main if revision == "main" else revision
        if sha not in state.revisions:
            self._error(method, 404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return None
        return sha

    def _hub(self, method: str, path: str, query: dict) -> None:
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if m:
            return self._model_info(method, m.group(1), m.group(2) or "main", query)
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
        if m:
            return self._tree(method, m.group(1), m.group(2), m.group(3) or "")
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            return self._resolve(method, m.group(1), m.group(2), m.group(3))
        self._error(method, 404, f"no route for {path}")

    def _model_info(self, method: str, repo: str, revision: str, query: dict) -> None:
        state = self._repo(method, repo, for_files=False)
        if state is None:
            return
        sha = self._revision(method, state, revision)
        if sha is None:
            return
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for f in state.revisions[sha].values():
            sibling = {"rfilename": f.name}
            if blobs:
                sibling.update(size=f.size, blobId=f.git_oid)
                if f.lfs:
                    sibling["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": 134}
            siblings.append(sibling)
        self._json(
            method,
            {
                "_id": hashlib.md5(repo.encode()).hexdigest()[:24],
                "id": repo,
                "modelId": repo,
                "author": repo.split("/")[0],
                "sha": sha,
                "lastModified": "2025-01-01T00:00:00.000Z",
                "createdAt": "2025-01-01T00:00:00.000Z",
                "private": state.visibility == "private",
                "gated": "manual" if state.visibility == "gated" else False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": ["transformers", "safetensors"],
                "library_name": "transformers",
                "siblings": siblings,
            },
        )

    def _tree(self, method: str, repo: str, revision: str, prefix: str) -> None:
        state = self._repo(method, repo, for_files=False)
        if state is None:
            return
        sha = self._revision(method, state, revision)
        if sha is None:
            return
        entries = []
        for f in state.revisions[sha].values():
            if prefix and not f.name.startswith(prefix.rstrip("/") + "/"):
                continue
            entry = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.name}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries.append(entry)
        self._json(method, entries)

    def _resolve(self, method: str, repo: str, revision: str, filename: str) -> None:
        self._ctx.update(repo=repo, filename=filename)
        state = self._repo(method, repo, for_files=True)
        if state is None:
            return
        sha = self._revision(method, state, revision)
        if sha is None:
            return
        f = state.revisions[sha].get(filename)
        if f is None:
            return self._error(method, 404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": sha})
        if f.lfs:
            self._send(
                method,
                302,
                {
                    "Location": f"{self.hub.cdn}/cdn/{f.sha256}",
                    "X-Repo-Commit": sha,
                    "X-Linked-Etag": f'"{f.sha256}"',
                    "X-Linked-Size": f.size,
                    "ETag": f'"{f.git_oid}"',
                },
            )
            return
        self._file(method, f, {"X-Repo-Commit": sha, "ETag": f'"{f.git_oid}"'})

    def _cdn(self, method: str, path: str) -> None:
        m = re.fullmatch(r"/cdn/([0-9a-f]{64})", path)
        f = self.hub._blobs.get(m.group(1)) if m else None
        if f is None:
            return self._error(method, 404, "no such blob")
        self._ctx.update(filename=f.name)
        self._file(method, f, {"ETag": f'"{f.sha256}"'})

    def _file(self, method: str, f: ServedFile, headers: dict) -> None:
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        spec = self.headers.get("Range")
        start, end = 0, f.size  # [start, end)
        status = 200
        if spec:
            m = _RANGE_RE.match(spec.strip())
            if not m or (not m.group(1) and not m.group(2)):
                return self._error(method, 416, f"bad range {spec!r}")
            a, b = m.group(1), m.group(2)
            if a:
                start = int(a)
                end = min(int(b) + 1, f.size) if b else f.size
            else:  # suffix range: the last b bytes
                start = max(0, f.size - int(b))
            if start >= f.size or start >= end:
                return self._error(method, 416, f"range {spec!r} outside a {f.size}-byte file",
                                   headers={"Content-Range": f"bytes */{f.size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{f.size}"
        self._ctx.update(start=start, blob=f.sha256)
        self._send(method, status, headers, file=(f.path, start, end - start))
