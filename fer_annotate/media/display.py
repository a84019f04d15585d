"""File names as text that can be shown and stored: a name is any bytes, but a console line or a UTF-8 table
cell is not.

Python decodes a file name that is not UTF-8 with surrogate escapes (byte 0xff becomes U+DCFF), which cannot
be encoded again as UTF-8 and would stop a print or a table write; a newline in a name would split a console
line; an escape character could drive the terminal. `text_name` spells undecodable bytes as `\\xff`, for
tables; `visible` also spells control characters (`\\n`, `\\t`, `\\x1b`), for the console.
"""

CONTROL_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def text_name(text: str) -> str:
    """`text` with the bytes of an undecodable file name written as `\\xNN` (valid UTF-8 from then on)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def visible(text: str) -> str:
    """`text` as one console line: undecodable bytes as `\\xNN`, control and other unprintable characters
    as `\\n`, `\\t`, `\\xNN` or `\\uNNNN`; everything else (accents, CJK, spaces) unchanged."""
    out = []
    for ch in text_name(text):
        if ch.isprintable():
            out.append(ch)
        elif ch in CONTROL_NAMES:
            out.append(CONTROL_NAMES[ch])
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return "".join(out)
