"""Build the hostile-input corpus: ``python tests/data/hostile/make_corpus.py``.

The small files are committed next to this script (so a reader can open them) and rebuilt
byte for byte by it; ``cases.toml`` says what each one attacks and what the CLI must answer.
The big or machine-specific cases (100k columns, a 10 MB cell, 200k blank rows, a directory,
a symlink) are never stored: the tests call ``generate(name, folder)`` at run time.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import struct
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
import xlsxwriter

HERE = Path(__file__).resolve().parent
TOKEN = "env:TIKTOK_TEST_TOKEN"  # set by the tests (helpers_input.ENV)
GROUP = "decent_dropsy"  # a group the sandbox knows
HEADER = ["group_id", "schema", "access_token"]
FORMULAS = ["=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "+1+1", "-2+3"]
FIXED_DATE = dt.datetime(2024, 1, 1)

Builder = Callable[[Path], None]
COMMITTED: dict[str, Builder] = {}
GENERATED: dict[str, Builder] = {}


def committed(name: str) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        COMMITTED[name] = build
        return build
    return register


def generated(name: str) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        GENERATED[name] = build
        return build
    return register


def csv_text(rows: Sequence[Sequence[str]], newline: str = "\n") -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows(rows)
    return out.getvalue()


def good(schema: str) -> list[str]:
    return [GROUP, schema, TOKEN]


def workbook(path: Path) -> xlsxwriter.Workbook:
    book = xlsxwriter.Workbook(str(path))
    book.set_properties({"created": FIXED_DATE})
    return book


def write_rows(sheet: object, rows: Sequence[Sequence[object]], top: int = 0,
               left: int = 0) -> None:
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is None or value == "":
                continue
            if isinstance(value, str):
                sheet.write_string(top + r, left + c, value)  # type: ignore[attr-defined]
            else:
                sheet.write_number(top + r, left + c, value)  # type: ignore[attr-defined]


def simple_book(path: Path, rows: Sequence[Sequence[object]], name: str = "connections") -> None:
    book = workbook(path)
    write_rows(book.add_worksheet(name), rows)
    book.close()


def rewrite_zip(source: Path, target: Path, edit: Callable[[str, bytes], bytes]) -> None:
    """Copy a workbook, passing every member through ``edit`` (fixed timestamps)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            info = zipfile.ZipInfo(item.filename, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, edit(item.filename, src.read(item.filename)))


# --- encodings, line endings, empty files --------------------------------------------------

@committed("empty.csv")
def _empty(path: Path) -> None:
    path.write_bytes(b"")


@committed("header_only.csv")
def _header_only(path: Path) -> None:
    path.write_text(csv_text([HEADER]), encoding="utf-8")


@committed("blank_rows_only.csv")
def _blank_rows(path: Path) -> None:
    path.write_text(csv_text([HEADER]) + ",,\n" * 40 + "\n" * 40 + " , ,\t\n", encoding="utf-8")


CAFE = [[*HEADER, "client_name"], [*good("tiktok_cafe"), "Café ☕ 東京"]]


@committed("utf8_bom.csv")
def _utf8_bom(path: Path) -> None:
    path.write_bytes(csv_text(CAFE).encode("utf-8-sig"))


@committed("utf16_le_bom.csv")
def _utf16_le(path: Path) -> None:
    path.write_bytes(b"\xff\xfe" + csv_text(CAFE, "\r\n").encode("utf-16-le"))


@committed("utf16_be_bom.csv")
def _utf16_be(path: Path) -> None:
    path.write_bytes(b"\xfe\xff" + csv_text(CAFE, "\r\n").encode("utf-16-be"))


@committed("utf16_truncated.csv")
def _utf16_cut(path: Path) -> None:
    path.write_bytes((b"\xff\xfe" + csv_text(CAFE).encode("utf-16-le"))[:-1])


@committed("utf16_no_bom.csv")
def _utf16_no_bom(path: Path) -> None:
    path.write_bytes(csv_text(CAFE).encode("utf-16-le"))


@committed("invalid_utf8.csv")
def _latin1(path: Path) -> None:
    path.write_bytes(csv_text([*CAFE, [*good("tiktok_two"), "Crème"]]).encode("latin-1",
                                                                                "replace"))


@committed("line_endings_mixed.csv")
def _mixed_endings(path: Path) -> None:
    path.write_bytes(b"group_id,schema,access_token\r\n"
                     + f"{GROUP},tiktok_crlf,{TOKEN}\r\n".encode()
                     + f"{GROUP},tiktok_lf,{TOKEN}\n".encode()
                     + f"{GROUP},Bad Schema,{TOKEN}\r".encode()
                     + f"{GROUP},tiktok_last,{TOKEN}\r\n".encode())


@committed("line_endings_cr_only.csv")
def _cr_only(path: Path) -> None:
    path.write_bytes(csv_text([HEADER, good("tiktok_one"), good("tiktok_two")], "\r").encode())


@committed("nul_byte.csv")
def _nul(path: Path) -> None:
    path.write_bytes(csv_text([HEADER, good("tiktok_one")]).encode()
                     + f"{GROUP},tiktok\x00two,{TOKEN}\n".encode())


# --- CSV structure ----------------------------------------------------------------------

@committed("ragged_extra_cells.csv")
def _ragged(path: Path) -> None:
    path.write_text(csv_text([HEADER, good("tiktok_one"), [*good("tiktok_two"), "surplus"]]),
                    encoding="utf-8")


@committed("trailing_separators.csv")
def _trailing(path: Path) -> None:
    path.write_text("group_id,schema,access_token\n"
                    f"{GROUP},tiktok_one,{TOKEN},,\n{GROUP},tiktok_two,{TOKEN},\n",
                    encoding="utf-8")


@committed("unclosed_quote.csv")
def _unclosed(path: Path) -> None:
    path.write_text(f"group_id,schema,access_token\n{GROUP},tiktok_one,{TOKEN}\n"
                    f'{GROUP},"tiktok_two,{TOKEN}\n{GROUP},tiktok_three,{TOKEN}\n',
                    encoding="utf-8")


@committed("semicolon_separated.csv")
def _semicolons(path: Path) -> None:
    path.write_text(f"group_id;schema;access_token;sync_mode;accounts\n"
                    f'{GROUP};tiktok_eu;{TOKEN};SpecificAccounts;"7012345678901234567,'
                    '7012345678901234568"\n', encoding="utf-8")


@committed("tab_separated.tsv")
def _tabs(path: Path) -> None:
    path.write_text(csv_text([HEADER, good("tiktok_tab"), [GROUP, "Bad Tab", TOKEN]],
                             "\n").replace(",", "\t"), encoding="utf-8")


@committed("duplicate_headers_exact.csv")
def _dup_exact(path: Path) -> None:
    path.write_text(csv_text([["group_id", "schema", "schema", "access_token"],
                              [GROUP, "tiktok_one", "tiktok_two", TOKEN]]), encoding="utf-8")


@committed("duplicate_headers_case_space.csv")
def _dup_case(path: Path) -> None:
    path.write_text(csv_text([["Group ID", "schema", "access_token", "group_id"],
                              [GROUP, "tiktok_one", TOKEN, "other_group"]]), encoding="utf-8")


@committed("empty_header_name.csv")
def _empty_header(path: Path) -> None:
    path.write_text(csv_text([["group_id", "", "schema", "access_token", " "],
                              [GROUP, "kept", "tiktok_one", TOKEN, "also kept"]]),
                    encoding="utf-8")


@committed("leading_blank_lines.csv")
def _leading_blank(path: Path) -> None:
    path.write_text("\n  \n" + csv_text([HEADER, good("tiktok_one"), [GROUP, "Bad", TOKEN]]),
                    encoding="utf-8")


@committed("markup_[red]name.csv")
def _markup_name(path: Path) -> None:
    path.write_text(csv_text([["group_id", "access_token"], [GROUP, TOKEN]]), encoding="utf-8")


# --- values -----------------------------------------------------------------------------

@committed("numbers_where_strings_belong.csv")
def _numbers(path: Path) -> None:
    path.write_text(csv_text([[*HEADER, "paused", "timeframe_months", "sync_frequency"],
                              ["12345", "tiktok_one", TOKEN, "1", "12", "1440.0"],
                              [GROUP, "42", TOKEN, "2", "12.5", "1e3"]]), encoding="utf-8")


@committed("leading_zeros.csv")
def _zeros(path: Path) -> None:
    path.write_text(csv_text([[*HEADER, "sync_mode", "accounts", "client_code"],
                              ["0012", "tiktok_zero", TOKEN, "SpecificAccounts",
                               "0070123456789012345", "000123"]]), encoding="utf-8")


@committed("sci_notation_text.csv")
def _sci_text(path: Path) -> None:
    path.write_text(csv_text([[*HEADER, "sync_mode", "accounts"],
                              [*good("tiktok_sci"), "SpecificAccounts", "1.23E+18"],
                              [*good("tiktok_ok"), "SpecificAccounts", "7012345678901234567"]]),
                    encoding="utf-8")


@committed("formula_payloads.csv")
def _formulas(path: Path) -> None:
    rows = [[*HEADER, "client_name"]]
    rows += [[*good(f"tiktok_f{i}"), formula] for i, formula in enumerate(FORMULAS)]
    rows += [[GROUP, "=1+1", TOKEN, "=HYPERLINK(\"http://evil.example\")"]]
    path.write_text(csv_text(rows), encoding="utf-8")


@committed("rtl_emoji_bidi.csv")
def _rtl(path: Path) -> None:
    path.write_text(csv_text([[*HEADER, "שם הלקוח 🦄"],
                              [*good("tiktok_rtl"), "\u202eevil.exe\u202c עברית 👨‍👩‍👧"],
                              [GROUP, "tiktok_\u202egnp", TOKEN, "x"],
                              [GROUP, "שלום", TOKEN, "🦄"]]), encoding="utf-8")


@committed("terminal_escapes_markup.csv")
def _escapes(path: Path) -> None:
    path.write_text(csv_text([[*HEADER, "sync_mode", "accounts"],
                              [GROUP, "\x1b[2J\x1b]0;pwned\x07", TOKEN, "", ""],
                              [GROUP, "[/bold]", TOKEN, "SpecificAccounts",
                               "[link=file:///etc/passwd]x[/link]"]]), encoding="utf-8")


@committed("path_traversal_secrets.csv")
def _traversal(path: Path) -> None:
    path.write_text(csv_text([HEADER, [GROUP, "tiktok_up", "file:../../etc/passwd"],
                              [GROUP, "tiktok_abs", "file:/etc/passwd"],
                              [GROUP, "tiktok_home", "file:~/.ssh/id_rsa"],
                              [GROUP, "tiktok_dot", "file:."]]), encoding="utf-8")


@committed("env_missing.csv")
def _env(path: Path) -> None:
    path.write_text(csv_text([HEADER, [GROUP, "tiktok_unset", "env:HOSTILE_NOT_SET_ANYWHERE"],
                              [GROUP, "tiktok_badname", "env:not a name"],
                              [GROUP, "tiktok_blank", "env:"], good("tiktok_good")]),
                    encoding="utf-8")


@committed("duplicate_keys.csv")
def _dup_keys(path: Path) -> None:
    path.write_text(csv_text([HEADER, good("tiktok_same"), good("tiktok_same"),
                              good("tiktok_unique"), ["happy_harbor", "tiktok_same", TOKEN]]),
                    encoding="utf-8")


@committed("group_id_dot_segments.csv")
def _dots(path: Path) -> None:
    path.write_text(csv_text([HEADER, ["..", "tiktok_dotdot", TOKEN], [".", "tiktok_dot", TOKEN],
                              ["a/../../v1/users", "tiktok_slash", TOKEN],
                              good("tiktok_fine")]), encoding="utf-8")


@committed("secret_path_nul.parquet")
def _secret_nul(path: Path) -> None:
    pl.DataFrame({"group_id": [GROUP] * 4,
                  "schema": ["tiktok_nul", "tiktok_long", "tiktok_deep", "tiktok_good"],
                  "access_token": ["file:tok\x00en.txt", "file:" + "x" * 5000,
                                   "file:" + "../" * 300 + "etc/passwd", TOKEN]},
                 ).write_parquet(path, statistics=False)


@committed("good.csv")
def _good(path: Path) -> None:
    path.write_text(csv_text([HEADER, good("tiktok_good")]), encoding="utf-8")


@committed("limits_nan.toml")
def _nan_limits(path: Path) -> None:
    path.write_text("[limits]\nconcurrency = nan\nmax_wait_seconds = inf\n", encoding="utf-8")


# --- XLSX -------------------------------------------------------------------------------

@committed("zero_byte.xlsx")
def _zero_xlsx(path: Path) -> None:
    path.write_bytes(b"")


@committed("truncated.xlsx")
def _truncated_xlsx(path: Path) -> None:
    simple_book(path, [HEADER, good("tiktok_one")])
    path.write_bytes(path.read_bytes()[:1500])


@committed("corrupt_sheet_xml.xlsx")
def _corrupt_xml(path: Path) -> None:
    source = path.with_suffix(".tmp.xlsx")
    simple_book(source, [HEADER, good("tiktok_one")])
    rewrite_zip(source, path, lambda name, data: data[: len(data) // 2]
                if name == "xl/worksheets/sheet1.xml" else data)
    source.unlink()


@committed("xml_entity_bomb.xlsx")
def _bomb(path: Path) -> None:
    source = path.with_suffix(".tmp.xlsx")
    simple_book(source, [HEADER, good("tiktok_one")])
    entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10 if i else "lol"}">' for i in range(10))
    doctype = f'<?xml version="1.0"?><!DOCTYPE bomb [{entities}]>'

    def edit(name: str, data: bytes) -> bytes:
        if name != "xl/sharedStrings.xml":
            return data
        text = data.decode().split("?>", 1)[1].replace("<t>tiktok_one</t>", "<t>&e9;</t>")
        return (doctype + text).encode()

    rewrite_zip(source, path, edit)
    source.unlink()


@committed("formulas.xlsx")
def _xlsx_formulas(path: Path) -> None:
    book = workbook(path)
    sheet = book.add_worksheet("connections")
    write_rows(sheet, [[*HEADER, "sync_frequency", "client_name"],
                       [GROUP, None, TOKEN], [GROUP, None, TOKEN]])
    sheet.write_formula(1, 1, '="tiktok_"&"formula"', None, "tiktok_formula")
    sheet.write_formula(1, 3, "=1000+440", None, 1440)
    sheet.write_formula(1, 4, "=cmd|' /C calc'!A0", None, "=cmd|' /C calc'!A0")
    sheet.write_formula(2, 1, '=UPPER("bad")', None, "BAD")
    sheet.write_formula(2, 3, "=1/0", None, "#DIV/0!")
    book.close()


@committed("merged_cells.xlsx")
def _merged(path: Path) -> None:
    book = workbook(path)
    sheet = book.add_worksheet("connections")
    write_rows(sheet, [HEADER])
    sheet.merge_range(1, 0, 2, 0, GROUP)
    write_rows(sheet, [["tiktok_top", TOKEN], ["tiktok_under", TOKEN]], top=1, left=1)
    book.close()


@committed("hidden_first_sheet.xlsx")
def _hidden(path: Path) -> None:
    book = workbook(path)
    hidden = book.add_worksheet("old_connections")
    write_rows(hidden, [HEADER, good("tiktok_from_hidden")])
    hidden.hide()
    visible = book.add_worksheet("connections")
    write_rows(visible, [HEADER, good("tiktok_from_visible")])
    visible.activate()
    book.close()


@committed("only_custom_reports.xlsx")
def _only_reports(path: Path) -> None:
    simple_book(path, [["schema", "table_name", "report_type", "metrics"],
                       ["tiktok_one", "daily", "auction_basic_ad_report", "spend"]],
                name="custom_reports")


@committed("sci_notation_numeric.xlsx")
def _sci_numeric(path: Path) -> None:
    simple_book(path, [[*HEADER, "sync_mode", "accounts"],
                       [*good("tiktok_float"), "SpecificAccounts", 1.23e18],
                       [*good("tiktok_small"), "SpecificAccounts", 1234567],
                       [*good("tiktok_text"), "SpecificAccounts", "7012345678901234567"]])


@committed("offset_table.xlsx")
def _offset(path: Path) -> None:
    book = workbook(path)
    sheet = book.add_worksheet("connections")
    write_rows(sheet, [[*HEADER, "sync_mode", "accounts"],
                       [*good("tiktok_fine"), "AllAccounts", None],
                       [GROUP, "Bad Schema", TOKEN, "AllAccounts", None],
                       [*good("tiktok_number"), "SpecificAccounts", 7.012345678901235e18]],
               top=2, left=2)
    book.close()


@committed("duplicate_headers.xlsx")
def _xlsx_dups(path: Path) -> None:
    simple_book(path, [["group_id", "schema", "access_token", "Schema"],
                       [GROUP, "tiktok_one", TOKEN, "tiktok_two"]])


@committed("numbers_where_strings_belong.xlsx")
def _xlsx_numbers(path: Path) -> None:
    book = workbook(path)
    sheet = book.add_worksheet("connections")
    write_rows(sheet, [[*HEADER, "paused", "sync_frequency", "timeframe_months"],
                       [12345, "tiktok_num", TOKEN, 1, 1440, 12],
                       [GROUP, 42, TOKEN, 2, 1440.5, 1e300]])
    sheet.write_boolean(1, 3, True)
    book.close()


@committed("blank_rows_only.xlsx")
def _xlsx_blank(path: Path) -> None:
    book = workbook(path)
    sheet = book.add_worksheet("connections")
    write_rows(sheet, [HEADER])
    bold = book.add_format({"bold": True})
    for row in range(1, 2000, 97):
        sheet.write_blank(row, 0, None, bold)
    sheet.write_string(1999, 1, "   ")
    book.close()


@committed("terminal_escapes.xlsx")
def _xlsx_escapes(path: Path) -> None:
    simple_book(path, [HEADER, [GROUP, "tiktok_\x1b[31mred\x1b[0m", TOKEN],
                       [GROUP, "bell\x07nul\x00", TOKEN]])


REPORT_HEADER = ["schema", "table_name", "report_type", "metrics"]


@committed("custom_reports_duplicate_table.xlsx")
def _report_dups(path: Path) -> None:
    book = workbook(path)
    write_rows(book.add_worksheet("connections"), [HEADER, good("tiktok_one"),
                                                   good("tiktok_two")])
    write_rows(book.add_worksheet("custom_reports"), [
        REPORT_HEADER, ["tiktok_one", "daily", "auction_basic_ad_report", "spend"],
        ["tiktok_one", "daily", "auction_basic_campaign_report", "impressions"],
        ["tiktok_two", "daily", "auction_basic_ad_report", "spend"]])
    book.close()


@committed("custom_reports_override.csv")
def _report_override(path: Path) -> None:
    path.write_text(csv_text([REPORT_HEADER, ["tiktok_one", "daily", "auction_basic_ad_report",
                                              "spend"]]), encoding="utf-8")


# --- Parquet and other formats ----------------------------------------------------------

@committed("nested_types.parquet")
def _nested(path: Path) -> None:
    pl.DataFrame({
        "group_id": [GROUP], "schema": ["tiktok_nested"], "access_token": [TOKEN],
        "sync_mode": ["SpecificAccounts"], "accounts": [[7012345678901234567]],
        "meta": [{"owner": "ops", "tags": ["a", "b"]}], "matrix": [[[1, 2], [3]]],
        "blob": [b"\x00\xff\xfe"], "label": [b"plain text"],
    }).write_parquet(path, statistics=False)


@committed("truncated.parquet")
def _cut_parquet(path: Path) -> None:
    pl.DataFrame({"group_id": [GROUP], "schema": ["tiktok_one"],
                  "access_token": [TOKEN]}).write_parquet(path, statistics=False)
    path.write_bytes(path.read_bytes()[:-20])


@committed("old_format.xls")
def _xls(path: Path) -> None:
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))


@committed("apple.numbers")
def _numbers_app(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("Index/Document.iwa", (1980, 1, 1, 0, 0, 0)), b"\x00")


@committed("no_extension")
def _no_suffix(path: Path) -> None:
    path.write_text(csv_text([HEADER, good("tiktok_one")]), encoding="utf-8")


# --- hardening (issue 13): headers, digits, bounds, limits, Excel's sep= line -------------

FORMULA_HEADERS = ['=HYPERLINK("http://evil.example","x")', "=cmd|' /C calc'!A0", "+1+1",
                   "@SUM(A1)"]


@committed("formula_headers.csv")
def _formula_headers(path: Path) -> None:
    path.write_text(csv_text([[*HEADER, *FORMULA_HEADERS],
                              [*good("tiktok_headers"), "a", "b", "c", "d"],
                              [GROUP, "Bad Schema", TOKEN, "e", "f", "g", "h"]]),
                    encoding="utf-8")


@committed("unicode_digits.csv")
def _unicode_digits(path: Path) -> None:
    path.write_text(csv_text([[*HEADER, "sync_mode", "accounts", "sync_frequency",
                               "data_delay_sensitivity", "data_delay_threshold"],
                              [*good("tiktok_ascii"), "SpecificAccounts", "7012345678901234567",
                               "1440", "CUSTOM", "60"],
                              [*good("tiktok_fullwidth"), "SpecificAccounts",
                               "７０１２３４５６７８９０１２３４５６７", "", "", ""],
                              [*good("tiktok_arabic_indic"), "SpecificAccounts",
                               "٧٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧", "", "", ""],
                              [*good("tiktok_frequency"), "AllAccounts", "", "١٤٤٠", "", ""],
                              [*good("tiktok_threshold"), "AllAccounts", "", "", "CUSTOM",
                               "６０"]]), encoding="utf-8")


@committed("huge_integers.csv")
def _huge_integers(path: Path) -> None:
    path.write_text(csv_text([[*HEADER, "sync_frequency", "data_delay_sensitivity",
                               "data_delay_threshold"],
                              [*good("tiktok_year"), "", "CUSTOM", "525600"],
                              [*good("tiktok_nines"), "", "CUSTOM", "9" * 23],
                              [*good("tiktok_year_and_a_minute"), "", "CUSTOM", "525601"],
                              [*good("tiktok_int32"), "", "CUSTOM", "2147483648"],
                              [*good("tiktok_frequency"), "9" * 23, "", ""]]), encoding="utf-8")


@committed("limits_out_of_range.toml")
def _limits_out_of_range(path: Path) -> None:
    path.write_text("[limits]\nmax_attempts = 0\ncalls_per_hour = 0.5\nread_timeout = 0\n",
                    encoding="utf-8")


@committed("excel_sep_line.csv")
def _sep_line(path: Path) -> None:
    path.write_text("sep=;\r\n" + csv_text([HEADER, good("tiktok_sep"), [GROUP, "Bad", TOKEN]],
                                            "\r\n").replace(",", ";"), encoding="utf-8")


# --- resource limits (issue 13): zip bombs, lying ZIP directories, more rows than Excel -----

MAX_ROWS = 1_048_576  # Excel's limit, header included (batch_provisioner.sheet.common)


def sheet_rows(path: Path, rows: str, *, level: int = 9) -> None:
    """A one-sheet workbook whose sheet XML ends with ``rows`` (raw ``<row>`` elements)."""
    source = path.with_suffix(".tmp.xlsx")
    simple_book(source, [HEADER, good("tiktok_one")])

    def edit(name: str, data: bytes) -> bytes:
        if name != "xl/worksheets/sheet1.xml":
            return data
        return data.replace(b"</sheetData>", rows.encode() + b"</sheetData>")

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED,
                                                         compresslevel=level) as out:
        for item in src.infolist():
            info = zipfile.ZipInfo(item.filename, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, edit(item.filename, src.read(item.filename)))
    source.unlink()


@committed("zip_ratio_bomb.xlsx")
def _zip_ratio(path: Path) -> None:
    # 2 MB of XML in 10 KB: under the size limit, 382:1; real workbooks stay under 60:1
    sheet_rows(path, "<row><c><v>1</v></c></row>" * 80_000)


@committed("zip_directory_lies.xlsx")
def _zip_liar(path: Path) -> None:
    # the sheet's sizes in the ZIP directory (and local header) say 100 bytes; it inflates to
    # 140 KB: a check that trusts the directory lets it through; fastexcel reads all of it
    source = path.with_suffix(".tmp.xlsx")
    sheet_rows(source, "".join(f'<row r="{i}"><c r="A{i}" t="inlineStr"><is><t>{i}</t></is>'
                               "</c></row>" for i in range(3, 2_003)))
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    struct.pack_into("<I", data, info.header_offset + 22, 100)  # local header: size
    entry = data.find(b"PK\x01\x02")
    while entry != -1:  # the central directory entry that names the sheet
        name_length = struct.unpack_from("<H", data, entry + 28)[0]
        if data[entry + 46:entry + 46 + name_length] == info.filename.encode():
            struct.pack_into("<I", data, entry + 24, 100)  # central directory: size
            break
        entry = data.find(b"PK\x01\x02", entry + 4)
    path.write_bytes(bytes(data))
    source.unlink()


# --- generated at test time -------------------------------------------------------------

@generated("columns_100k.csv")
def _wide(path: Path) -> None:
    names = [*HEADER, *(f"extra_{i}" for i in range(100_000))]
    path.write_text(",".join(names) + "\n" + ",".join(good("tiktok_wide")) + "," * 100_000
                    + "\n", encoding="utf-8")


@generated("cell_10mb.csv")
def _big_cell(path: Path) -> None:
    huge = "a" * 10_000_000
    path.write_text(csv_text([[*HEADER, "notes"], [GROUP, huge, TOKEN, "x"],
                              [*good("tiktok_fine"), huge]]), encoding="utf-8")


@generated("blank_rows_200k.csv")
def _blank_200k(path: Path) -> None:
    path.write_text(csv_text([HEADER]) + ",,\n" * 200_000, encoding="utf-8")


@generated("directory.csv")
def _directory(path: Path) -> None:
    path.mkdir()


@generated("symlink_secret.csv")
def _symlink(path: Path) -> None:
    (path.parent / "token.txt").write_text("a-real-looking-token-7f3a", encoding="utf-8")
    os.symlink("/etc/passwd", path.parent / "innocent.txt")
    path.write_text(csv_text([HEADER, [GROUP, "tiktok_link", "file:innocent.txt"],
                              [GROUP, "tiktok_file", "file:token.txt"]]), encoding="utf-8")


@generated("zip_bomb.xlsx")
def _zip_bomb(path: Path) -> None:
    # 10.5 million rows of one cell: 273 MB of XML in 0.7 MB (fastexcel would need GBs);
    # built at test time, as the committed files stay small
    sheet_rows(path, "<row><c><v>1</v></c></row>" * 10_500_000)


@generated("rows_over_limit.xlsx")
def _rows_xlsx(path: Path) -> None:
    # one row more than Excel allows, every row different (10:1, like a real sheet)
    sheet_rows(path, "".join(f'<row r="{i}"><c r="A{i}" t="inlineStr"><is><t>g{i}</t></is>'
                             "</c></row>" for i in range(3, MAX_ROWS + 2)), level=1)


@generated("rows_over_limit.csv")
def _rows_csv(path: Path) -> None:
    path.write_text(csv_text([HEADER]) + "".join(f"{GROUP},tiktok_{i},{TOKEN}\n"
                                                 for i in range(MAX_ROWS)), encoding="utf-8")


@generated("rows_over_limit.parquet")
def _rows_parquet(path: Path) -> None:
    pl.DataFrame({"group_id": [GROUP] * MAX_ROWS,
                  "schema": [f"tiktok_{i}" for i in range(MAX_ROWS)],
                  "access_token": [TOKEN] * MAX_ROWS}).write_parquet(path)


def generate(name: str, folder: Path) -> Path:
    """Make the named case (committed or generated) in ``folder``; return its path."""
    path = folder / name
    (GENERATED.get(name) or COMMITTED[name])(path)
    return path


def build_all(folder: Path = HERE) -> list[Path]:
    """Write every committed file into ``folder``."""
    return [generate(name, folder) for name in COMMITTED]


if __name__ == "__main__":
    for written in build_all(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(written.relative_to(Path.cwd()) if written.is_relative_to(Path.cwd()) else written)
