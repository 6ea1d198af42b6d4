"""The CIAO text header of Bruker NanoScope files, parsed into sections of typed entries.

Layout (NanoScope 4.3 and later, header versions 0x0430…0x0960 seen)::

    \\*Force file list            (or \\*File list for image files; the first line is the magic)
    \\Version: 0x0920B046
    \\Key: text                   plain entry
    \\@Sens. DeflSens: V 27.39 nm/V             a sensitivity ("soft scale"), value and unit
    \\@4:Z scale: V [Sens. DeflSens] (0.000375 V/LSB) 2.5 V
                                 a "V" (value) entry: [soft scale] (hard scale per LSB) hard value
    \\@Z magnify: C [4:Z scale] 1.0               a "C" (scale) entry
    \\@4:Image Data: S [DeflectionError] "Deflection Error"      an "S" (select) entry
    \\*Ciao force image list      the next section ...
    \\*File list end              then byte 0x1A; the binary data follow at each list's \\Data offset

``@N:`` is a group number, part of the key.  Keys are looked up without regard to case or spaces,
because NanoScope versions spell the same key differently (``Ramp size`` / ``Ramp Size``,
``Spring Constant`` / ``Spring constant``).  A line that does not parse (e.g. the corrupted
``(\\Data length V/LSB)`` hard scale of 20200903_Egel2.0_00023.spm) keeps what could be read and is
listed in :attr:`Header.problems`; it never stops the read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

#: The line that ends the text header.
HEADER_END = b"\\*File list end"
#: First bytes of NanoScope files (force files, image files, the text variant, electrochemistry files).
MAGICS = (b"\\*Force file list", b"\\*File list", b"?*File list", b"\\*EC File list")
#: The header must end within this many bytes (real headers are 8–80 kB); guards against garbage input.
MAX_HEADER_BYTES = 4 * 1024 * 1024

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_VALUE_RE = re.compile(
    r"^V\s*(?:\[(?P<soft>[^\]]*)\])?\s*(?:\((?P<hard>(?:[^()]|\([^()]*\))*)\))?\s*(?P<rest>.*)$")
_LEADING_NUMBER_RE = re.compile(rf"^\s*(?P<num>{_NUMBER})\s*(?P<unit>.*?)\s*$")


def normalize_key(key: str) -> str:
    """``"@4:Ramp Size Zsweep"`` → ``"@4:rampsizezsweep"`` (case and spaces do not matter)."""
    return re.sub(r"\s+", "", key).lower()


@dataclass
class CiaoValue:
    """One ``\\@`` entry.  ``kind`` is ``V`` (value), ``C`` (scale) or ``S`` (select).

    For ``V``: ``soft_scale`` names a ``\\@Sens.`` entry (or is None), ``hard_scale`` is the number in
    parentheses with its ``hard_scale_unit`` (e.g. 0.000375, ``V/LSB``), ``value``/``unit`` the hard value.
    For ``S``: ``soft_scale`` is the token in brackets and ``text`` the quoted name.
    """

    kind: str
    text: str
    soft_scale: str | None = None
    hard_scale: float | None = None
    hard_scale_unit: str = ""
    value: float | None = None
    unit: str = ""


@dataclass
class Section:
    """One ``\\*`` list: its name and its entries in file order (plain text or :class:`CiaoValue`)."""

    name: str
    line: int
    entries: dict = field(default_factory=dict)  # normalized key -> (original key, value)

    def get(self, key: str, default=None):
        hit = self.entries.get(normalize_key(key))
        return default if hit is None else hit[1]

    def has(self, key: str) -> bool:
        return normalize_key(key) in self.entries

    def number(self, key: str, index: int = 0) -> float | None:
        """The ``index``-th number of a plain entry (``Samps/line: 1024 1024`` → 1024), or the hard
        value of a ``V`` entry; None when absent or not a number."""
        value = self.get(key)
        if isinstance(value, CiaoValue):
            return value.value if index == 0 else None
        if value is None:
            return None
        numbers = _NUMBER_RE.findall(value)
        return float(numbers[index]) if len(numbers) > index else None

    def numbers(self, key: str) -> list[float]:
        value = self.get(key)
        if value is None or isinstance(value, CiaoValue):
            return []
        return [float(n) for n in _NUMBER_RE.findall(value)]

    def text(self, key: str) -> str | None:
        value = self.get(key)
        if isinstance(value, CiaoValue):
            return value.text
        return value


@dataclass
class Header:
    """The parsed header: sections in file order, sensitivities, problems found while parsing."""

    text: str
    sections: list[Section]
    #: ``"Sens. DeflSens"`` -> (value, unit string as written, e.g. ``"nm/V"`` or ``""``)
    sens: dict[str, tuple[float, str]]
    #: human-readable notes on lines that could not be parsed completely
    problems: list[str]
    #: byte offset just after the header end marker
    end: int

    def first(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name.lower() == name.lower():
                return s
        return None

    def all(self, name: str) -> list[Section]:
        return [s for s in self.sections if s.name.lower() == name.lower()]

    def lookup(self, key: str, default=None):
        """First value of ``key`` in any section."""
        for s in self.sections:
            if s.has(key):
                return s.get(key)
        return default

    @property
    def version(self) -> int | None:
        text = self.lookup("Version")
        if isinstance(text, str):
            try:
                return int(text.strip(), 16)
            except ValueError:
                return None
        return None


def find_header_end(data: bytes) -> int:
    """Byte offset of the ``\\*File list end`` marker, or -1."""
    return data.find(HEADER_END, 0, MAX_HEADER_BYTES)


def parse_header(raw: bytes) -> Header:
    """Parse the header bytes (everything before ``\\*File list end``).

    Text is Latin-1 (``º`` is byte 0xBA, ``~m`` means µm).  Lines end in CR LF (LF alone accepted).
    """
    text = raw.decode("latin-1")
    sections: list[Section] = []
    sens: dict[str, tuple[float, str]] = {}
    problems: list[str] = []
    current = Section(name="(preamble)", line=0)
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip("\r\n\x00")
        if not line.strip():
            continue
        if line.startswith("\\*"):
            current = Section(name=line[2:].strip(), line=number)
            sections.append(current)
            continue
        if not line.startswith("\\"):
            problems.append(f"header line {number} does not start with '\\': {line[:80]!r} (ignored)")
            continue
        key, sep, value = _split_key(line[1:])
        if not sep:
            problems.append(f"header line {number} has no 'key: value' form: {line[:80]!r} (ignored)")
            continue
        if key.startswith("@"):
            parsed = _parse_ciao(value.strip(), number, line, problems)
            if key.startswith("@Sens.") and parsed.kind == "V":
                name = key[1:].strip()
                if parsed.value is not None and name not in sens:
                    sens[name] = (parsed.value, parsed.unit)
            entry = parsed
        else:
            entry = value.strip()
        norm = normalize_key(key)
        if norm not in current.entries:  # first occurrence wins, like the vendor's own reader
            current.entries[norm] = (key, entry)
    return Header(text=text, sections=sections, sens=sens, problems=problems, end=len(raw))


def _split_key(body: str) -> tuple[str, str, str]:
    """``"@4:Z scale: V [...] ..."`` → (``"@4:Z scale"``, ``":"``, ``" V [...] ..."``)."""
    start = 0
    group = re.match(r"@\d+:", body)
    if group:
        start = group.end()
    idx = body.find(":", start)
    if idx < 0:
        return body.strip(), "", ""
    return body[:idx].strip(), ":", body[idx + 1:]


def _parse_ciao(value: str, number: int, line: str, problems: list[str]) -> CiaoValue:
    kind = value[:1]
    if kind == "V":
        m = _VALUE_RE.match(value)
        entry = CiaoValue(kind="V", text=value)
        if not m:  # cannot happen with this pattern, kept for safety
            problems.append(f"header line {number} unreadable: {line[:100]!r}")
            return entry
        entry.soft_scale = m.group("soft").strip() if m.group("soft") is not None else None
        hard = m.group("hard")
        if hard is not None:
            hm = _LEADING_NUMBER_RE.match(hard)
            if hm:
                entry.hard_scale = float(hm.group("num"))
                entry.hard_scale_unit = hm.group("unit")
            else:
                problems.append(f"header line {number}: hard scale ({hard}) is not a number: {line[:120]!r}; "
                                "the hard value is still used")
        rest = m.group("rest")
        vm = _LEADING_NUMBER_RE.match(rest)
        if vm:
            entry.value = float(vm.group("num"))
            entry.unit = vm.group("unit")
        elif rest.strip():
            problems.append(f"header line {number}: value {rest.strip()!r} is not a number: {line[:120]!r}")
        return entry
    if kind == "C":
        m = re.match(r"^C\s*(?:\[(?P<ref>[^\]]*)\])?\s*(?P<rest>.*)$", value)
        entry = CiaoValue(kind="C", text=value, soft_scale=m.group("ref") if m else None)
        vm = _LEADING_NUMBER_RE.match(m.group("rest")) if m else None
        if vm:
            entry.value = float(vm.group("num"))
            entry.unit = vm.group("unit")
        return entry
    if kind == "S":
        m = re.match(r'^S\s*(?:\[(?P<token>[^\]]*)\])?\s*"?(?P<text>[^"]*)"?\s*$', value)
        if m:
            return CiaoValue(kind="S", text=m.group("text"), soft_scale=m.group("token"))
        return CiaoValue(kind="S", text=value)
    problems.append(f"header line {number}: unknown entry type {kind!r}: {line[:100]!r}")
    return CiaoValue(kind=kind or "?", text=value)
