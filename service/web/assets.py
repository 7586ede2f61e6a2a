"""Static files of the page and of the API docs, served with content-hashed URLs.

``url("app.css")`` is ``/-/static/app.css?h=<first 12 hex of its SHA-256>``; a request whose
hash matches the file as it is now is answered with a year-long immutable cache header, any other
with ``no-cache`` and an ETag (so a stale link still works, and is revalidated). Files come from
``service/web/static`` and, under ``vendor/``, from the ``fastapi_offline`` package, which ships
Swagger UI and ReDoc, so /docs and /redoc render with no network. ReDoc's one external
reference, the "API docs by Redocly" logo image, is served rewritten to an empty inline picture
(the component hides a logo that does not load, but the attempt would still go out).
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from fastapi.responses import Response

STATIC = Path(__file__).parent / "static"
PREFIX = "/-/static/"
IMMUTABLE = "public, max-age=31536000, immutable"
EMPTY_SVG = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"
REWRITES = {  # file name -> (bytes, replacement): the vendored files' calls to the internet
    "redoc.standalone.js": [(b"https://cdn.redoc.ly/redoc/logo-mini.svg", EMPTY_SVG)],
}


def vendor_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


class Assets:
    def __init__(self, roots: dict[str, Path] | None = None) -> None:
        # URL prefix -> directory; "" is the page's own files
        self.roots = roots if roots is not None else {"": STATIC, "vendor/": vendor_dir()}
        self._hashes: dict[Path, tuple[float, int, str]] = {}

    @staticmethod
    def read(path: Path) -> bytes:
        """The file as served."""
        data = path.read_bytes()
        for old, new in REWRITES.get(path.name, []):
            data = data.replace(old, new)
        return data

    def path(self, name: str) -> Path | None:
        """The file behind ``name``, or None (unknown, or outside its root)."""
        for prefix, root in sorted(self.roots.items(), key=lambda kv: -len(kv[0])):
            if not name.startswith(prefix):
                continue
            candidate = (root / name[len(prefix) :]).resolve()
            if candidate.is_file() and candidate.is_relative_to(root.resolve()):
                return candidate
            return None
        return None

    def digest(self, path: Path) -> str:
        stat = path.stat()
        known = self._hashes.get(path)
        if known is None or known[:2] != (stat.st_mtime, stat.st_size):
            sha = hashlib.sha256(self.read(path)).hexdigest()[:12]
            known = (stat.st_mtime, stat.st_size, sha)
            self._hashes[path] = known
        return known[2]

    def url(self, name: str) -> str:
        path = self.path(name)
        if path is None:
            raise KeyError(f"no static file {name!r}")
        return f"{PREFIX}{name}?h={self.digest(path)}"

    def response(self, name: str, wanted: str | None, if_none_match: str | None) -> Response:
        path = self.path(name)
        if path is None:
            return Response(status_code=404)
        digest = self.digest(path)
        etag = f'"{digest}"'
        cache = IMMUTABLE if wanted == digest else "no-cache"
        headers = {"ETag": etag, "Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
        if if_none_match == etag:
            return Response(status_code=304, headers=headers)
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if media.startswith("text/") or media.endswith("javascript"):
            media += "; charset=utf-8"
        return Response(self.read(path), media_type=media, headers=headers)
