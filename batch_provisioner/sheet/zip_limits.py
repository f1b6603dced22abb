"""How far an XLSX workbook may inflate, checked before fastexcel reads a byte of it.

An XLSX file is a ZIP archive of XML, and XML of millions of identical rows compresses about
1000:1: a 3 MB file that unzips to 785 MB drove fastexcel to 3.3 GB and a SIGABRT. So a
workbook is refused (``InputError``, exit 2, naming the limit) when

* the sizes its ZIP directory declares add up to more than ``MAX_INFLATED_BYTES``, or one
  member inflates more than ``MAX_RATIO``:1 (a real workbook stays under about 60:1);
* its members, inflated for real (a bounded stream, never held in memory), come to more than
  the limit or to other sizes than the directory declares. fastexcel inflates each member to
  its end whatever the directory says, so a directory that understates sizes must not get
  past the first check.

Excel, LibreOffice and Google Sheets store members with Deflate (or not compressed at all);
any other method is refused. A damaged archive passes through untouched: the reader then says
it is not a readable workbook.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from batch_provisioner.errors import InputError

#: What all members of a workbook may inflate to, together (about 350,000 rows of 16 columns;
#: beyond that, CSV or Parquet are read faster and in less memory).
MAX_INFLATED_BYTES = 256 * 2**20
#: How much one member may inflate (members under ``_RATIO_FLOOR`` are not judged).
MAX_RATIO = 200
_RATIO_FLOOR = 2**20
_CHUNK = 2**20
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra length
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
_checked: dict[tuple[str, int, int], None] = {}  # (path, size, mtime) already found sound


def check_inflation(path: Path) -> None:
    """Refuse a workbook that would inflate past the limits (see the module docstring)."""
    try:
        stat = path.stat()
        stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if stamp in _checked:
            return
        with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
            members = archive.infolist()
            _check_directory(path, members)
            _check_streams(path, raw, members)
    except (zipfile.BadZipFile, zlib.error, struct.error, OSError, EOFError, ValueError):
        return  # damaged: fastexcel reports it as an unreadable workbook
    _checked[stamp] = None


def _check_directory(path: Path, members: list[zipfile.ZipInfo]) -> None:
    declared = sum(m.file_size for m in members)
    if declared > MAX_INFLATED_BYTES:
        raise InputError(_too_big(declared), path=str(path))
    for member in members:
        if member.compress_type not in _METHODS:
            raise InputError(f"member {member.filename!r} uses ZIP compression method "
                             f"{member.compress_type}, which no spreadsheet program writes "
                             "(only Deflate): save the workbook again", path=str(path))
        ratio = member.file_size / max(1, member.compress_size)
        if member.file_size > _RATIO_FLOOR and ratio > MAX_RATIO:
            raise InputError(f"member {member.filename!r} inflates {ratio:,.0f}:1 (at most "
                             f"{MAX_RATIO}:1 is read; a real workbook stays far below): a zip "
                             "bomb, not a spreadsheet", path=str(path))


def _check_streams(path: Path, raw: BinaryIO, members: list[zipfile.ZipInfo]) -> None:
    """Inflate every member for real, counting bytes, and compare with the directory."""
    total = 0
    for member in members:
        size = _inflated_size(raw, member, MAX_INFLATED_BYTES - total)
        total += size
        if total > MAX_INFLATED_BYTES:
            raise InputError(_too_big(total, at_least=True), path=str(path))
        if size != member.file_size:
            raise InputError(f"member {member.filename!r} inflates to {size:,} bytes, but the "
                             f"ZIP directory says {member.file_size:,}: a damaged or crafted "
                             "workbook", path=str(path))


def _inflated_size(raw: BinaryIO, member: zipfile.ZipInfo, budget: int) -> int:
    """The bytes ``member`` inflates to, counted up to ``budget + 1`` (then it stops)."""
    raw.seek(member.header_offset)
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local header")
    raw.seek(name_length + extra_length, 1)
    if member.compress_type == zipfile.ZIP_STORED:
        return member.compress_size
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    left, size = member.compress_size, 0
    while size <= budget and not inflater.eof:
        data = inflater.unconsumed_tail
        if not data and left > 0:
            data = raw.read(min(_CHUNK, left))
            left -= len(data)
        out = inflater.decompress(data, _CHUNK)  # at most a chunk at a time, never all
        size += len(out)
        if not out and not data:  # no input left and nothing more comes out: cut short
            break
    return size


def _too_big(size: int, *, at_least: bool = False) -> str:
    mb = f"{'more than ' if at_least else ''}{size / 2**20:,.0f} MB"
    return (f"unzips to {mb}; a workbook may unzip to at most {MAX_INFLATED_BYTES // 2**20} MB "
            "(a zip bomb, or a sheet too big for XLSX: save it as CSV or Parquet)")
