"""A minimal, valid one-page PDF with text: what a scanned-and-OCRed attachment looks like in bytes.

>>> pdf = minimal_pdf(["REFERRAL FOR PHYSICAL THERAPY", "Dx: M54.50"])
>>> pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
True
>>> b"(Dx: M54.50) '" in pdf
True
"""

from __future__ import annotations

from collections.abc import Sequence

_ESCAPES = str.maketrans({"\\": "\\\\", "(": "\\(", ")": "\\)"})


def _pdf_string(text: str) -> str:
    return "(" + text.translate(_ESCAPES) + ")"


def minimal_pdf(lines: Sequence[str]) -> bytes:
    """One Letter-size page showing ``lines`` in Helvetica; byte offsets in the xref are exact."""
    ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"]
    for i, line in enumerate(lines):
        ops.append(f"{_pdf_string(line)} Tj" if i == 0 else f"{_pdf_string(line)} '")
    ops.append("ET")
    # WinAnsiEncoding lets accented Latin characters of names print; others become '?'.
    stream = "\n".join(ops).encode("cp1252", errors="replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
