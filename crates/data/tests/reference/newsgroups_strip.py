"""Independent reference for 20 Newsgroups stripping: scikit-learn's functions, re-stated from
`sklearn/datasets/_twenty_newsgroups.py` (BSD-3-Clause), applied in scikit-learn's order.

Run `python3 newsgroups_strip.py`; tests/readers.rs holds its output.
"""
import json
import re

_QUOTE_RE = re.compile(
    r"(writes in|writes:|wrote:|says:|said:" r"|^In article|^Quoted from|^\||^>)"
)


def strip_newsgroup_header(text):
    _before, _blankline, after = text.partition("\n\n")
    return after


def strip_newsgroup_quoting(text):
    good_lines = [line for line in text.split("\n") if not _QUOTE_RE.search(line)]
    return "\n".join(good_lines)


def strip_newsgroup_footer(text):
    lines = text.strip().split("\n")
    for line_num in range(len(lines) - 1, -1, -1):
        line = lines[line_num]
        if line.strip().strip("-") == "":
            break
    if line_num > 0:
        return "\n".join(lines[:line_num])
    else:
        return text


def strip(text, remove):
    if "headers" in remove:
        text = strip_newsgroup_header(text)
    if "footers" in remove:
        text = strip_newsgroup_footer(text)
    if "quotes" in remove:
        text = strip_newsgroup_quoting(text)
    return text


POST = (
    "From: someone@example.com\nSubject: Re: engines\nLines: 9\n\n"
    "In article <1@x.com> other@y.com writes:\n> the old engine was loud\n"
    "| piped quote\nI disagree; the new one is louder.\nHe said: no way.\n"
    "  Quoted from the manual\nEnd of argument.\n\n-- \nSomeone  |  someone@example.com\n"
)
NO_HEADER = "no blank line here\njust text\n"
SIG_ONLY = "----\nsignature first\n"

if __name__ == "__main__":
    out = {}
    for name, text in [("post", POST), ("no_header", NO_HEADER), ("sig_only", SIG_ONLY)]:
        for remove in [("headers",), ("footers",), ("quotes",), ("headers", "footers", "quotes")]:
            out[name + ":" + "+".join(remove)] = strip(text, remove)
    print(json.dumps(out, indent=1))
