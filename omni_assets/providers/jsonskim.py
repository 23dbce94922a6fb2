"""Read a JSON body of any size with flat memory: big strings are skimmed off, or diverted.

Google's Interactions API returns a finished video *inside* the interaction's JSON, as a base64
string that can be 100 MB or more (docs/providers-google.md). ``json.loads`` on such a body holds
the body, the string and the decoded bytes at once. :class:`JsonSkimmer` reads the body piece by
piece, as it arrives, and writes out the same document with every string longer than ``keep``
bytes replaced by ``"omni-skimmed:<length>"``; that small copy is then parsed as usual. One
string, named by its path (``("steps", 1, "content", 0, "data")``), can instead be *diverted*:
its characters go to a callback (a base64 decoder writing into storage) as they arrive, and the
copy holds ``"omni-diverted:<length>"`` in its place.

Only structural bytes are looked at one by one; string contents are skipped with ``bytes.find``
and a regex, so a 130 MB string costs little more than copying it. A body that is not well-formed
JSON, nests deeper than ``max_depth`` or whose skimmed copy grows past ``max_output`` bytes sets
:attr:`JsonSkimmer.error`; the copy is then cut short (it will not parse), never grown further.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["DIVERTED", "SKIMMED", "JsonPath", "JsonSkimmer"]

SKIMMED = "omni-skimmed:"
DIVERTED = "omni-diverted:"

JsonPath = tuple[str | int, ...]

_STRUCTURE = re.compile(rb"[{}\[\],:]")
# What a JSON escape stands for inside a diverted (base64) string: "\/" is "/", JSON-escaped
# line breaks of MIME-style base64 are dropped, the rest is passed on for the decoder to refuse.
_ESCAPES = {
    ord("/"): b"/",
    ord("n"): b"",
    ord("r"): b"",
    ord("t"): b"",
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("b"): b"\b",
    ord("f"): b"\f",
}


class JsonSkimmer:
    """Feed it a JSON body in pieces (:meth:`feed`); it returns the skimmed copy in pieces.

    ``divert`` names one string value whose raw characters go to ``on_divert`` instead (JSON
    escapes resolved); :attr:`diverted` says whether it was seen.
    """

    def __init__(
        self,
        *,
        keep: int = 64 * 1024,
        divert: JsonPath | None = None,
        on_divert: Callable[[bytes], None] | None = None,
        max_output: int = 8 * 1024 * 1024,
        max_depth: int = 64,
    ) -> None:
        self.keep = keep
        self.divert = divert
        self.on_divert = on_divert
        self.max_output = max_output
        self.max_depth = max_depth
        self.diverted = False
        self.error: str | None = None
        self.output_size = 0
        self.seen_value = False
        # Each open container: [kind ("o" or "a"), current key or index, expecting a key].
        self._stack: list[list[Any]] = []
        self._in_string = False
        self._mode = "keep"  # keep | skim | key | divert, for the string being read
        self._buf = bytearray()
        self._length = 0
        self._escape = False
        self._hex: bytearray | None = None  # the digits of a \u escape being read
        self._out = bytearray()
        self._quote: int | None = None  # where the next '"' of the current piece is (-1: none)

    # -- public --------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; return the skimmed copy of it (possibly empty)."""
        if self.error is None:
            try:
                self._feed(data)
            except _Broken as exc:
                self.error = str(exc)
        out = bytes(self._out)
        self._out.clear()
        return out

    def close(self) -> bytes:
        """The end of the body: sets :attr:`error` if the document was not complete."""
        if self.error is None and (self._in_string or self._stack or not self.seen_value):
            self.error = "the JSON document ended early"
        out = bytes(self._out)
        self._out.clear()
        return out

    # -- scanning ------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._quote = None
        pos, end = 0, len(data)
        while pos < end:
            if self._in_string:
                pos = self._string(data, pos)
                continue
            quote = data.find(b'"', pos)
            stop = end if quote < 0 else quote
            self._structure(data[pos:stop])
            if quote < 0:
                return
            self._open_string()
            pos = quote + 1

    def _structure(self, segment: bytes) -> None:
        stack = self._stack
        for match in _STRUCTURE.finditer(segment):
            char = match.group()
            if char in (b"{", b"["):
                if len(stack) >= self.max_depth:
                    raise _Broken(f"JSON nested deeper than {self.max_depth} levels")
                stack.append(["o", None, True] if char == b"{" else ["a", 0, False])
                self.seen_value = True
            elif char in (b"}", b"]"):
                if not stack or stack[-1][0] != ("o" if char == b"}" else "a"):
                    raise _Broken("unbalanced JSON brackets")
                stack.pop()
            elif char == b",":
                if not stack:
                    raise _Broken("a comma outside any JSON container")
                top = stack[-1]
                if top[0] == "a":
                    top[1] += 1
                else:
                    top[2] = True
            elif stack:  # ":"
                stack[-1][2] = False
        if segment.strip():
            self.seen_value = True
        self._emit(segment)

    def _open_string(self) -> None:
        stack = self._stack
        self._in_string, self._length, self._escape, self._hex = True, 0, False, None
        self._buf.clear()
        self.seen_value = True
        if stack and stack[-1][0] == "o" and stack[-1][2]:
            self._mode = "key"
        elif self.divert is not None and tuple(e[1] for e in stack) == self.divert:
            self._mode = "divert"
        else:
            self._mode = "keep"

    def _string(self, data: bytes, pos: int) -> int:
        if self._hex is not None:
            take = data[pos : pos + 4 - len(self._hex)]
            self._hex.extend(take)
            if len(self._hex) == 4:
                self._unicode_escape(bytes(self._hex))
                self._hex = None
            return pos + len(take)
        if self._escape:
            self._escape = False
            char = data[pos]
            if char == ord("u"):
                self._hex = bytearray()
            elif self._mode == "divert":
                self._take(_ESCAPES.get(char, bytes((char,))))
            else:
                self._take(b"\\" + bytes((char,)))
            return pos + 1
        # Two memchr-speed finds instead of a regex (which costs ~25 ns a byte); the quote's
        # position is kept for the piece, so a run of escapes does not search it again.
        if self._quote is None or 0 <= self._quote < pos:
            self._quote = data.find(b'"', pos)
        end = len(data) if self._quote < 0 else self._quote
        backslash = data.find(b"\\", pos, end)
        stop = end if backslash < 0 else backslash
        if stop > pos:
            self._take(data[pos:stop])
        if stop == len(data):
            return stop
        if data[stop] == ord('"'):
            self._close_string()
        else:
            self._escape = True
        return stop + 1

    def _unicode_escape(self, digits: bytes) -> None:
        if self._mode == "divert":
            try:
                point = int(digits, 16)
            except ValueError:
                raise _Broken(f"a bad \\u escape {digits!r}") from None
            self._take(chr(point).encode("utf-8"))
        else:
            self._take(b"\\u" + digits)

    def _take(self, piece: bytes) -> None:
        self._length += len(piece)
        mode = self._mode
        if mode == "divert":
            if self.on_divert is not None:
                self.on_divert(piece)
        elif mode != "skim":
            self._buf.extend(piece)
            if len(self._buf) > self.keep:
                if mode == "key":
                    raise _Broken(f"a JSON key longer than {self.keep} bytes")
                self._mode = "skim"
                self._buf.clear()

    def _close_string(self) -> None:
        self._in_string = False
        mode = self._mode
        if mode == "key":
            raw = b'"' + bytes(self._buf) + b'"'
            try:
                self._stack[-1][1] = json.loads(raw)
            except ValueError:
                raise _Broken("a JSON key that does not decode") from None
            self._emit(raw)
        elif mode == "keep":
            self._emit(b'"' + bytes(self._buf) + b'"')
        elif mode == "skim":
            self._emit(f'"{SKIMMED}{self._length}"'.encode())
        else:
            self.diverted = True
            self._emit(f'"{DIVERTED}{self._length}"'.encode())
        self._buf.clear()

    def _emit(self, piece: bytes) -> None:
        self.output_size += len(piece)
        if self.output_size > self.max_output:
            raise _Broken(f"the skimmed JSON grew past {self.max_output} bytes")
        self._out.extend(piece)


class _Broken(Exception):
    """The body is not JSON this skimmer will read (recorded in ``JsonSkimmer.error``)."""
