"""Builds a byte-level English corpus from the documentation Debian installs
(/usr/share/doc), with nothing downloaded:

  corpus.py OUT_DIR [--doc-root /usr/share/doc]

Takes the prose files of each package (README*, NEWS*, FAQ*, TODO*, *.txt,
*.md, *.rst, gzipped or not; no copyright files, no HTML, no code), drops
licence texts (paragraphs that name a licence's terms, and any paragraph found
in more than one package: boilerplate), drops lines that are mostly not
text, and splits by package, so that training and held-out text share no
file: a package is held out when crc32(name) % 10 == 0. Writes train.txt,
heldout.txt and corpus.json (sizes, packages, files). The result depends on
the packages installed; corpus.json records what went in.
"""

import argparse
import collections
import gzip
import json
import os
import re
import sys
import zlib

PROSE = re.compile(r"^(readme|news|faq|todo|changes|authors|thanks)([._-].*)?$|"
                   r"\.(txt|md|rst|markdown)$", re.IGNORECASE)
LICENCE = re.compile(r"licen[cs]e|warranty|copyright|permission is hereby granted|"
                     r"redistribut|merchantability|all rights reserved", re.IGNORECASE)
MAX_FILE_BYTES = 400_000


def prose_files(doc_root):
    for package in sorted(os.listdir(doc_root)):
        top = os.path.join(doc_root, package)
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                base = name[:-3] if name.endswith(".gz") else name
                if base.lower().startswith("copyright") or not PROSE.search(base):
                    continue
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    continue
                yield package, path


def read_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES)
    except (OSError, EOFError):
        return None
    text = data.decode("utf-8", errors="replace")
    printable = sum(c.isprintable() or c in "\n\t" for c in text)
    if not text or printable < 0.95 * len(text):
        return None
    return text


def paragraphs(text):
    for block in re.split(r"\n\s*\n", text):
        lines = [line.rstrip() for line in block.splitlines()]
        # Mostly letters and spaces: prose, not tables, code or logs.
        lines = [l for l in lines if l and sum(c.isalpha() or c == " " for c in l) >= 0.7 * len(l)]
        if lines:
            yield "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--doc-root", default="/usr/share/doc")
    args = parser.parse_args()
    per_package = collections.defaultdict(list)
    files = collections.Counter()
    for package, path in prose_files(args.doc_root):
        text = read_text(path)
        if text is None:
            continue
        files[package] += 1
        per_package[package].extend(paragraphs(text))
    seen_in = collections.Counter()
    for package, paras in per_package.items():
        for p in set(paras):
            seen_in[p] += 1
    split = {"train": [], "heldout": []}
    packages = {"train": 0, "heldout": 0}
    for package in sorted(per_package):
        kept = [p for p in per_package[package] if seen_in[p] == 1 and not LICENCE.search(p)]
        if not kept:
            continue
        which = "heldout" if zlib.crc32(package.encode()) % 10 == 0 else "train"
        split[which].append("\n\n".join(kept))
        packages[which] += 1
    os.makedirs(args.out_dir, exist_ok=True)
    summary = {"doc_root": args.doc_root, "rule": "held out when crc32(package) % 10 == 0"}
    for which, texts in split.items():
        data = ("\n\n".join(texts) + "\n").encode("utf-8")
        with open(os.path.join(args.out_dir, which + ".txt"), "wb") as f:
            f.write(data)
        summary[which] = {"bytes": len(data), "packages": packages[which],
                          "files": sum(files[p] for p in per_package
                                       if ("heldout" if zlib.crc32(p.encode()) % 10 == 0
                                           else "train") == which)}
    with open(os.path.join(args.out_dir, "corpus.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary))
    if summary["train"]["bytes"] < 100_000 or summary["heldout"]["bytes"] < 10_000:
        print("corpus: too little text under " + args.doc_root, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
