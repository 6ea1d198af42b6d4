"""A bounded deserializer of Gwyddion's native ``.gwy`` files (``GWYP`` and the older ``GWYO``).

The file is a tree of serialized objects (Gwyddion user guide, "Format of Gwyddion Files")::

    file      = magic ("GWYP", or "GWYO" for Gwyddion 1.x) object
    object    = name NUL  uint32 size  component*          (size = bytes of all components)
    component = name NUL  typecode  value
    value     = b: 1 byte | c: 1 byte | i: int32 | q: int64 | d: float64 | s: NUL-terminated text
              | o: object | C/I/Q/D: uint32 count + count items (1/4/8/8 bytes)
              | S: uint32 count + count texts | O: uint32 count + count objects

All numbers are little-endian.  In ``GWYO`` files the ``GwyContainer`` alone is laid out differently:
its items are ``uint32 GType, key NUL, value`` (GType 16 uchar, 20 boolean, 24 int, 40 int64, 60 double,
64 string, 80 object); every other object is as above.  Texts of old files may be Latin-1 (e.g. ``µm``
as byte 0xB5); they are decoded as UTF-8 when valid, else as Latin-1.

Why not ``gwyfile.load``: it trusts every size and count in the file.  A text value without its NUL
makes it loop forever, and a corrupted count makes it build lists of billions of items.  This parser
checks every size against the bytes left in the enclosing object before it reads or allocates, limits
the nesting depth, and raises :class:`GwyFormatError` with the byte offset.  Its output is the same as
``gwyfile``'s (``gwyfile.objects.GwyObject`` trees: dicts with ``name`` and ``typecodes``), and the tests
use ``gwyfile.load`` as the independent reader of the GWYP files.
"""
from __future__ import annotations

import struct

import numpy as np
from gwyfile.objects import GwyObject

MAGIC_NEW = b"GWYP"
MAGIC_OLD = b"GWYO"
#: Deeper nesting than this is taken as corruption (real files nest < 10 levels).
MAX_DEPTH = 64

_SCALARS = {"i": ("<i", 4), "q": ("<q", 8), "d": ("<d", 8)}
_ARRAYS = {"C": np.dtype("u1"), "I": np.dtype("<i4"), "Q": np.dtype("<i8"), "D": np.dtype("<f8")}
#: GType of the values of a GWYO GwyContainer -> the typecode of the same value in GWYP.
_OLD_CONTAINER_TYPES = {16: "c", 20: "b", 24: "i", 40: "q", 60: "d", 64: "s", 80: "o"}
#: Smallest possible serialized object: a 1-character name, NUL, uint32 size.
_MIN_OBJECT = 6


class GwyFormatError(ValueError):
    """The bytes are not a well-formed serialized Gwyddion object; ``offset`` is where it went wrong."""

    def __init__(self, offset: int, problem: str):
        self.offset = offset
        self.problem = problem
        super().__init__(f"{problem} (at byte {offset})")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Reader:
    def __init__(self, data: bytes, old: bool):
        self.data = data
        self.old = old

    def cstring(self, pos: int, end: int) -> tuple[str, int]:
        stop = self.data.find(b"\0", pos, end)
        if stop < 0:
            raise GwyFormatError(pos, "text without its terminating NUL byte")
        return _text(self.data[pos:stop]), stop + 1

    def uint32(self, pos: int, end: int) -> tuple[int, int]:
        if pos + 4 > end:
            raise GwyFormatError(pos, "truncated: a 4-byte size or count runs past the end of its object")
        return struct.unpack_from("<I", self.data, pos)[0], pos + 4

    def obj(self, pos: int, end: int, depth: int) -> tuple[GwyObject, int]:
        if depth > MAX_DEPTH:
            raise GwyFormatError(pos, f"objects nested deeper than {MAX_DEPTH} levels")
        name, pos = self.cstring(pos, end)
        if not name:
            raise GwyFormatError(pos - 1, "object with an empty type name")
        size, pos = self.uint32(pos, end)
        stop = pos + size
        if stop > end:
            raise GwyFormatError(pos - 4, f"object {name} declares {size} bytes but only {end - pos} remain")
        data, typecodes = {}, {}
        if self.old and name == "GwyContainer":
            while pos < stop:
                gtype, pos = self.uint32(pos, stop)
                if gtype not in _OLD_CONTAINER_TYPES:
                    raise GwyFormatError(pos - 4, f"unknown value type {gtype} in an old (GWYO) container")
                key, pos = self.cstring(pos, stop)
                code = _OLD_CONTAINER_TYPES[gtype]
                data[key], pos = self.value(code, pos, stop, depth)
                typecodes[key] = code
        else:
            while pos < stop:
                key, pos = self.cstring(pos, stop)
                if pos >= stop:
                    raise GwyFormatError(pos, f"component '{key}' of {name} has no type code")
                code = chr(self.data[pos])
                data[key], pos = self.value(code, pos + 1, stop, depth)
                typecodes[key] = code
        return GwyObject(name, data, typecodes), stop

    def value(self, code: str, pos: int, end: int, depth: int):
        if code in ("b", "c"):
            if pos >= end:
                raise GwyFormatError(pos, "truncated one-byte value")
            byte = self.data[pos]
            return (byte != 0 if code == "b" else chr(byte)), pos + 1
        if code in _SCALARS:
            fmt, size = _SCALARS[code]
            if pos + size > end:
                raise GwyFormatError(pos, f"truncated {size}-byte number")
            return struct.unpack_from(fmt, self.data, pos)[0], pos + size
        if code == "s":
            return self.cstring(pos, end)
        if code == "o":
            return self.obj(pos, end, depth + 1)
        if code in _ARRAYS:
            count, pos = self.uint32(pos, end)
            dtype = _ARRAYS[code]
            nbytes = count * dtype.itemsize
            if pos + nbytes > end:
                raise GwyFormatError(pos - 4, f"array of {count} items needs {nbytes} bytes, only {end - pos} remain")
            return np.frombuffer(self.data, dtype=dtype, count=count, offset=pos), pos + nbytes
        if code == "S":
            count, pos = self.uint32(pos, end)
            if count > end - pos:  # every text takes at least its NUL byte
                raise GwyFormatError(pos - 4, f"{count} texts cannot fit in the {end - pos} bytes left")
            texts = []
            for _ in range(count):
                text, pos = self.cstring(pos, end)
                texts.append(text)
            return texts, pos
        if code == "O":
            count, pos = self.uint32(pos, end)
            if count * _MIN_OBJECT > end - pos:
                raise GwyFormatError(pos - 4, f"{count} objects cannot fit in the {end - pos} bytes left")
            objects = []
            for _ in range(count):
                item, pos = self.obj(pos, end, depth + 1)
                objects.append(item)
            return objects, pos
        raise GwyFormatError(pos - 1, f"unknown type code {code!r}")


def loads(data: bytes) -> GwyObject:
    """The top-level object (normally a ``GwyContainer``) of the ``.gwy`` file content ``data``.

    :raises GwyFormatError: not a ``.gwy`` file, truncated, or inconsistent sizes.
    """
    magic = bytes(data[:4])
    if magic not in (MAGIC_NEW, MAGIC_OLD):
        raise GwyFormatError(0, f"the magic bytes are {magic!r}, expected b'GWYP' or b'GWYO'")
    root, end = _Reader(data, old=magic == MAGIC_OLD).obj(4, len(data), 0)
    if end != len(data):
        raise GwyFormatError(end, f"{len(data) - end} bytes after the end of the top-level object")
    return root
