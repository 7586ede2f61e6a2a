"""A route class that refuses request text that is not UTF-8, naming the field.

Without it FastAPI answers an undecodable JSON body with a bare 400, and Starlette reads an
undecodable multipart field as Latin-1 without a word, so an id would be stored mangled. The body
is read here first; FastAPI's own parsing then reads it again from memory.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from service.errors import InvalidInput

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks


class Utf8Route(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            content_type = request.headers.get("content-type", "")
            if self.body_field is not None:
                if content_type.lower().startswith("multipart/form-data"):
                    _check_form(content_type, await request.body())
                elif is_json(content_type):
                    check_json(await request.body())
            return await handler(request)

        return checked


def is_json(content_type: str) -> bool:
    """What FastAPI parses as JSON: no content type, application/json or application/*+json."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or (
        media.startswith("application/") and media.endswith("+json")
    )


def check_json(body: bytes) -> None:
    try:  # decoded as json.loads decodes bytes
        body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the request body is not UTF-8 text: {exc.reason} at byte {exc.start}", "body"
        ) from None


def _check_form(content_type: str, body: bytes) -> None:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    try:
        charset = codecs.lookup(params.get(b"charset", b"utf-8").decode("latin-1")).name
    except LookupError:
        charset = "utf-8"  # unknown: Starlette would silently fall back to Latin-1
    if boundary is None or charset != "utf-8":  # a charset the client declared is its choice
        return
    for name, value in _text_fields(boundary, body):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            field = name.decode("utf-8", "replace")
            raise InvalidInput(
                f"form field {field!r} is not UTF-8 text: {exc.reason} at byte {exc.start}", field
            ) from None


class _TextFields:
    """python-multipart callbacks that keep the raw bytes of every part that is not a file."""

    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []
        self._header = (b"", b"")
        self._disposition = b""
        self._data: bytearray | None = None  # None while in a file part

    def on_part_begin(self) -> None:
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header = (self._header[0] + data[start:end], self._header[1])

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header = (self._header[0], self._header[1] + data[start:end])

    def on_header_end(self) -> None:
        if self._header[0].lower() == b"content-disposition":
            self._disposition = self._header[1]
        self._header = (b"", b"")

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._data = None if b"filename" in options else bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._data is not None:
            self._data += data[start:end]

    def on_part_end(self) -> None:
        if self._data is not None:
            _, options = parse_options_header(self._disposition)
            self.fields.append((options.get(b"name", b""), bytes(self._data)))


def _text_fields(boundary: bytes, body: bytes) -> list[tuple[bytes, bytes]]:
    """(name, raw value) of each text field; none when the body is malformed (FastAPI's parser,
    which runs next, says how)."""
    fields = _TextFields()
    callbacks: MultipartCallbacks = {
        "on_part_begin": fields.on_part_begin,
        "on_header_field": fields.on_header_field,
        "on_header_value": fields.on_header_value,
        "on_header_end": fields.on_header_end,
        "on_headers_finished": fields.on_headers_finished,
        "on_part_data": fields.on_part_data,
        "on_part_end": fields.on_part_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError:
        return []
    return fields.fields
