#!/usr/bin/env python3
"""Rebuilds the seed files of fuzz/corpus/{cda,index,csv,archive,crypto_text}/ from the
committed fixtures (tests/fixtures/) plus hand-made edge cases. The envelope seeds are
written by `RENKEI_WRITE_FUZZ_SEEDS=1 cargo test -p renkei-crypto --test it fuzz::write_envelope_seeds
-- --ignored` (they need the crypto crate to seal). Deterministic: same fixtures, same seeds.

Usage: fuzz/seed_corpus.py   (from anywhere)
"""

import io
import pathlib
import zipfile

FUZZ = pathlib.Path(__file__).resolve().parent
FIXTURES = FUZZ.parent / "tests" / "fixtures"
CORPUS = FUZZ / "corpus"

MAIN = "1311234567_00138016_202407011_1"
MHLW = "1311234567_00138016_202407012_1"


def entry(zip_name: str, name: str) -> bytes:
    with zipfile.ZipFile(FIXTURES / zip_name) as z:
        return z.read(name)


def zipped(entries: list, method: int) -> bytes:
    """A zip of (name, bytes) with fixed timestamps, so the seeds are reproducible."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 7, 1, 9, 0, 0))
            info.compress_type = method
            z.writestr(info, data)
    return buf.getvalue()


def write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def cda() -> bytes:
    good = entry(f"{MAIN}.zip", f"{MAIN}/DATA/h13112345672024052400001.xml")
    write("cda", "good_2007.xml", good)
    write("cda", "good_mhlw.xml", entry(f"{MHLW}.zip", f"{MHLW}/DATA/h13112345672024090200001.xml"))
    for bad in ["malformed", "doctype", "wrong_ns", "no_target", "not_number", "sjis"]:
        with zipfile.ZipFile(FIXTURES / "bad_inputs.zip") as z:
            name = next(n for n in z.namelist() if n.endswith(f"_{bad}.xml"))
            write("cda", f"bad_{bad}.xml", z.read(name))
    text = good.decode("utf-8")
    body_start = text.index("<ClinicalDocument")
    decl, root = text[:body_start], text[body_start:]
    write("cda", "truncated.xml", good[: len(good) // 3])
    write("cda", "truncated_in_tag.xml", good[: text.index("<recordTarget>") + 7])
    laughs = "".join(
        f'<!ENTITY l{i} "{"".join(f"&l{i - 1};" for _ in range(10))}">' for i in range(1, 10)
    )
    write(
        "cda",
        "billion_laughs.xml",
        (decl + f'<!DOCTYPE ClinicalDocument [<!ENTITY l0 "lol">{laughs}]>\n' + root.replace(
            "<title>特定健診情報</title>", "<title>&l9;</title>")).encode(),
    )
    write(
        "cda",
        "external_entity.xml",
        (decl + '<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
         + root.replace('value="163.1"', 'value="&xxe;"')).encode(),
    )
    write("cda", "doctype_lowercase.xml", (decl + "<!doctype ClinicalDocument>\n" + root).encode())
    write("cda", "undefined_entity.xml", text.replace("<title>特定健診情報</title>", "<title>&nbsp;&#0;&#xD800;</title>").encode())
    nested = "<a>" * 200 + "x" + "</a>" * 200
    write("cda", "deep_nesting.xml", text.replace("<title>特定健診情報</title>", nested).encode())
    write("cda", "deep_nesting_observation.xml", text.replace(
        "<entry>", "<entry>" + "<entryRelationship><observation>" * 40, 1).encode())
    huge = "9" * 65536
    write("cda", "huge_attribute.xml", text.replace("9N001000000000001", huge, 1).encode())
    write("cda", "huge_date.xml", text.replace('<effectiveTime value="20240524"/>\n    </serviceEvent>',
                                                f'<effectiveTime value="{huge}"/>\n    </serviceEvent>').encode())
    invalid = bytearray(good)
    invalid[good.index("仮名".encode())] = 0xFF
    write("cda", "invalid_utf8.xml", bytes(invalid))
    write("cda", "utf16_bom.xml", b"\xff\xfe" + text.encode("utf-16-le"))
    write("cda", "bom_utf8.xml", b"\xef\xbb\xbf" + good)
    write("cda", "content_after_root.xml", good + b"<ClinicalDocument/>")
    write("cda", "two_record_targets.xml", text.replace(
        "</recordTarget>", "</recordTarget><recordTarget/>", 1).encode())
    write("cda", "cdata_and_comments.xml", text.replace(
        "<title>特定健診情報</title>", "<!-- <!DOCTYPE x> --><title><![CDATA[<&>]]></title><?pi data?>").encode())
    write("cda", "empty.xml", b"")
    return good


def index() -> None:
    for zip_name, root in [(MAIN, "2007"), (MHLW, "mhlw")]:
        write("index", f"ix08_{root}.xml", entry(f"{zip_name}.zip", f"{zip_name}/ix08_V08.xml"))
        write("index", f"su08_{root}.xml", entry(f"{zip_name}.zip", f"{zip_name}/su08_V08.xml"))
    ix = entry(f"{MAIN}.zip", f"{MAIN}/ix08_V08.xml").decode()
    write("index", "count_overflow.xml", ix.replace('value="6"', 'value="99999999999999999999999"').encode())
    write("index", "doctype.xml", ix.replace("<index", '<!DOCTYPE index [<!ENTITY a "b">]>\n<index', 1).encode())
    write("index", "no_namespace.xml", b'<?xml version="1.0"?><index><totalRecordCount value="1"/></index>')


def csv() -> None:
    for f in sorted((FIXTURES / "csv").glob("*.csv")):
        write("csv", f.name, f.read_bytes())
    care = (FIXTURES / "csv" / "kdb_care_utf8.csv").read_text(encoding="utf-8")
    header, *rows = care.splitlines()
    def lines(*rows: str) -> bytes:
        return ("\n".join(rows) + "\n").encode()

    write("csv", "missing_column.csv", lines(header.rsplit(",", 1)[0], *rows))
    write("csv", "extra_cells.csv", lines(header, *[r + ",x,y" for r in rows]))
    write("csv", "short_row.csv", lines(header, rows[0].split(",", 3)[0]))
    write("csv", "quoted_newline.csv", lines(header, rows[0].replace("要支援1", '"要支\n援1"')))
    write("csv", "stray_quote.csv", lines(header, rows[0].replace("要支援1", '要"支援1'), rows[1].replace("要支援1", '"要支""援1"')))
    write("csv", "huge_field.csv", lines(header, rows[0].replace("要支援1", "x" * 65536)))
    write("csv", "bad_values.csv", lines(header, rows[0].replace("127670", "１２,７¥").replace("1963/01/03", "1963/02/30")))
    write("csv", "invalid_utf8.csv", header.encode() + b"\n" + rows[0].encode()[:20] + b"\xff\xfe\x80" + rows[0].encode()[20:] + b"\n")
    write("csv", "header_only.csv", lines(header))
    # The last record ending at the end of the file (fuzz finding 2).
    write("csv", "no_final_line_break.csv", "\n".join([header, *rows]).encode())
    write("csv", "unterminated_quote.csv", "\n".join([header, rows[0].replace("要支援1", '"要支援1')]).encode())
    write("csv", "empty.csv", b"")


def archive(good: bytes) -> None:
    for name in [f"{MAIN}.zip", "bad_inputs.zip"]:
        write("archive", name, (FIXTURES / name).read_bytes())
    write("archive", "no_index_and_escapes.zip", zipped([
        ("fuzz/DATA/h0000000001.xml", good),
        ("fuzz/../../escape.xml", good),
        ("C:/windows.xml", good),
        ("fuzz\\DATA\\h0000000002.xml", good),
    ], zipfile.ZIP_DEFLATED))
    stored = zipped([
        ("fuzz/ix08_V08.xml", entry(f"{MAIN}.zip", f"{MAIN}/ix08_V08.xml")),
        ("fuzz/DATA/h0000000001.xml", good),
    ], zipfile.ZIP_STORED)
    write("archive", "stored.zip", stored)
    write("archive", "truncated.zip", stored[: len(stored) // 2])
    write("archive", "not_a_zip.zip", b"PK\x03\x04 not really")


def crypto_text() -> None:
    write("crypto_text", "identity.txt", "06131186\n106-47\n9787560\n1963-01-03\n2\n02".encode())
    write("crypto_text", "identity_full_width.txt",
          "０６１３１１８６\n１０６－４７\n９７８ ７５６０\n19630103\n女\n２".encode())
    write("crypto_text", "identity_bad.txt", "12345\n\x00\n\n2023-02-30\nx\n123".encode())
    write("crypto_text", "tokens.txt", "\n".join([
        "st1_abcdefghijklmnopqrstuvwxyz234567",
        "rec1_abcdefghijklmnopqrstuvwxyz234567",
        "rp1_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        "sb1_abcdefghijklmnopqrstuvwxyz23456",
        "st1_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
        "st1_abcdefghijklmnopqrstuvwxyz23456８",
    ]).encode())
    write("crypto_text", "grant_80.bin", bytes(range(80)))
    write("crypto_text", "grant_92.bin", bytes(range(92)))
    write("crypto_text", "base64.txt", "\n".join([
        "A" * 106 + "==",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    ]).encode())


def main() -> None:
    good = cda()
    index()
    csv()
    archive(good)
    crypto_text()


if __name__ == "__main__":
    main()
