"""Independent reference for split fingerprints (docs/datasets.md, "Fingerprints").

fingerprint = hex(SHA-256(concat over examples of id || 0x1F || label || 0x1E)), where the label
of a token example is its tag names joined by single spaces. Run `python3 fingerprint.py`;
tests/protocol.rs holds its output.
"""
import hashlib


def fingerprint(examples):
    h = hashlib.sha256()
    for ident, label in examples:
        h.update(ident.encode("utf-8") + b"\x1f" + label.encode("utf-8") + b"\x1e")
    return h.hexdigest()


if __name__ == "__main__":
    print("empty:", fingerprint([]))
    print("two classes:", fingerprint([("sst2:train:0", "1"), ("sst2:train:1", "0")]))
    print("swapped:", fingerprint([("sst2:train:1", "0"), ("sst2:train:0", "1")]))
    print("tokens:", fingerprint([("conll2003:train:0", "B-ORG O B-MISC"), ("conll2003:train:1", "B-PER I-PER")]))
    print("unicode:", fingerprint([("é:0", "Sci/Tech")]))
