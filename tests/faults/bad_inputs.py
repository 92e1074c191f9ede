#!/usr/bin/env python3
"""Every bad input of issue 8 at once, for tests/it/faults/bad_input.rs.

    bad_inputs.py OUT_DIR

Writes into OUT_DIR (standard library only, same bytes every time):
  all_bad_1311234567_00138016_202407019_1.zip  one archive: the entries of
      tests/fixtures/bad_inputs.zip (2 good documents, malformed XML, DOCTYPE, wrong
      namespace, no recordTarget, non-numeric PQ, Shift_JIS, a 24 MiB deflate bomb,
      zip-slip `../evil.xml` and `/tmp/absolute.xml`) plus: billion laughs, an external
      entity, invalid UTF-8, a PQ too large for any number type, an impossible date,
      elements nested 200 deep, and a document with a 5 MB ST value
  over_limit.zip     an archive of 3 MiB (over the 2 MiB limit the test configures)
  not_a_zip.zip      text named .zip
  kdb_missing_column.csv   header without 性別 (no mapping fits)
  kdb_extra_columns.csv    header with 住所 and 電話番号 (ignored), ragged rows: one cell
      short, one cell extra in the middle (columns shift), one trailing extra cell
  kdb_euc_jp.csv     an export in EUC-JP (neither UTF-8 nor CP932)
  kdb_utf16.csv      an export in UTF-16LE
  kdb_bad_cp932.csv  CP932 with a broken byte in the second row
  kdb_good.csv       three good rows (UTF-8)
"""

import io
import os
import random
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "fixtures", "bad_inputs.zip")
ROOT = "all_bad_1311234567_00138016_202407019_1"
TIME = (2024, 7, 1, 9, 0, 0)

HEADER = ["保険者番号", "被保険者証記号", "被保険者証番号", "枝番", "氏名", "生年月日", "性別",
          "診療年月", "入院医療費", "入院外医療費", "歯科医療費", "調剤医療費", "医療費総額"]


def row(n):
    return ["138016", f"不良{n}", str(700000 + n), "01", f"不良　人{n}",
            f"19{50 + n:02}/0{1 + n % 9}/1{n % 9}", "男" if n % 2 == 0 else "女",
            "202404", "0", str(1000 + n), "0", "0", str(1000 + n)]


def csv_text(header, rows):
    return "".join(",".join(r) + "\n" for r in [header] + rows)


def variant(doc, n):
    """The good document under its own document id (so its records get their own ids)."""
    out = doc.replace("1311234567-20240524-00001", f"1311234567-20240524-{n:05}")
    assert out != doc
    return out


def add(z, name, data, method=zipfile.ZIP_DEFLATED):
    info = zipfile.ZipInfo(name, date_time=TIME)
    info.compress_type = method
    z.writestr(info, data)


def main(out):
    os.makedirs(out, exist_ok=True)
    src = zipfile.ZipFile(FIXTURE)
    good = src.read("bad_inputs/DATA/h0000000001.xml").decode("utf-8")
    path = os.path.join(out, ROOT + ".zip")
    with zipfile.ZipFile(path, "w") as z:
        for info in src.infolist():
            name = info.filename.replace("bad_inputs/", ROOT + "/", 1)
            add(z, name, src.read(info.filename))
        laughs = ('<!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + "".join(f'<!ENTITY lol{i} "' + f"&lol{i - 1};" * 10 + '">' for i in range(1, 10))
                  ).replace("&lol0;", "&lol;") + "]>\n"
        add(z, f"{ROOT}/DATA/h0000000010_billion_laughs.xml",
            variant(good, 10).replace("?>\n", "?>\n" + laughs, 1).replace("無職", "&lol9;", 1))
        xxe = '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        add(z, f"{ROOT}/DATA/h0000000011_xxe.xml",
            variant(good, 11).replace("?>\n", "?>\n" + xxe, 1).replace("無職", "&xxe;", 1))
        add(z, f"{ROOT}/DATA/h0000000012_bad_utf8.xml",
            variant(good, 12).encode("utf-8").replace("無職".encode("utf-8"), b"\xff\xfe\x80", 1))
        big_number = variant(good, 13).replace('value="176.6"', 'value="' + "9" * 400 + '"', 1)
        assert "9" * 400 in big_number
        add(z, f"{ROOT}/DATA/h0000000013_huge_number.xml", big_number)
        bad_date = variant(good, 14).replace('<effectiveTime value="20240524"/>',
                                             '<effectiveTime value="20241345"/>')
        assert bad_date.count("20241345") >= 2
        add(z, f"{ROOT}/DATA/h0000000014_bad_date.xml", bad_date)
        deep = variant(good, 15).replace("<component>", "<component>" + "<x>" * 200 + "</x>" * 200, 1)
        add(z, f"{ROOT}/DATA/h0000000015_deep.xml", deep)
        five_mb = variant(good, 16).replace('xsi:type="ST">無職', 'xsi:type="ST">' + "長" * (5 * 1024 * 1024 // 3), 1)
        assert len(five_mb.encode("utf-8")) > 5 * 1024 * 1024
        add(z, f"{ROOT}/DATA/h0000000016_five_mb_text.xml", five_mb)

    rng = random.Random(8)
    with zipfile.ZipFile(os.path.join(out, "over_limit.zip"), "w") as z:
        add(z, "over_limit/noise.bin", bytes(rng.getrandbits(8) for _ in range(3 * 1024 * 1024)),
            zipfile.ZIP_STORED)
    with open(os.path.join(out, "not_a_zip.zip"), "w") as f:
        f.write("this is not a zip archive\n")

    rows = [row(n) for n in range(3)]
    with open(os.path.join(out, "kdb_good.csv"), "w", encoding="utf-8") as f:
        f.write(csv_text(HEADER, rows))
    missing = [c for c in HEADER if c != "性別"]
    with open(os.path.join(out, "kdb_missing_column.csv"), "w", encoding="utf-8") as f:
        f.write(csv_text(missing, [[c for i, c in enumerate(row(n)) if HEADER[i] != "性別"] for n in range(3, 5)]))
    extra_header = HEADER[:5] + ["住所", "電話番号"] + HEADER[5:]
    def with_extra(n):
        r = row(n)
        return r[:5] + ["架空県見本市中央区一丁目", "090-0000-0000"] + r[5:]
    short = with_extra(6)[:-2]
    shifted = with_extra(7)
    shifted.insert(6, "余分")
    trailing = with_extra(8) + ["末尾の余分"]
    with open(os.path.join(out, "kdb_extra_columns.csv"), "w", encoding="utf-8") as f:
        f.write(csv_text(extra_header, [with_extra(5), short, shifted, trailing]))
    text = csv_text(HEADER, [row(n) for n in range(9, 11)])
    with open(os.path.join(out, "kdb_euc_jp.csv"), "wb") as f:
        f.write(text.encode("euc_jp"))
    with open(os.path.join(out, "kdb_utf16.csv"), "wb") as f:
        f.write(text.encode("utf-16"))
    sjis = csv_text(HEADER, [row(n) for n in range(11, 14)]).encode("cp932")
    lines = sjis.split(b"\n")
    lines[2] = lines[2].replace("不良".encode("cp932"), b"\x81\x20", 1)
    with open(os.path.join(out, "kdb_bad_cp932.csv"), "wb") as f:
        f.write(b"\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
