"""Independent reference for ToxiGen's `b'...'` unwrapping: Python's own parser.

Run `python3 bytes_literal.py`; tests/readers.rs holds its output (as Rust string literals).
"""
import ast

CASES = [
    r"b'plain text'",
    r'''b"it's quoted"''',
    r"b'line\nbreak and tab\t and \\ backslash'",
    r"b'escaped \'quote\' and \"double\"'",
    r"b'literal \\x00 text, byte \x41, octal \101\0'",
    r"b'caf\xc3\xa9 utf-8'",
    r"b'unknown \q escape'",
    r"not a literal",
    r"b'\r\n'",
]

if __name__ == "__main__":
    for case in CASES:
        if case.startswith(("b'", 'b"')):
            out = ast.literal_eval(case).decode("utf-8")
        else:
            out = case
        print(repr(case), "->", repr(out))
