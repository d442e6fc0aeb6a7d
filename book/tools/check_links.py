#!/usr/bin/env python3
"""Internal link check for the book (no network): every relative link or image in
book/src/**/*.md must name an existing file, and a `#anchor` on a Markdown page must match
one of that page's headings (mdBook's id rules: lower case, punctuation dropped, spaces to
`-`). `{{#include}}` targets must exist too. External links (scheme:) are not checked.

Usage: check_links.py BOOK_SRC
"""
import re
import sys
from pathlib import Path

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
REF = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
INCLUDE = re.compile(r"\{\{#(?:include|rustdoc_include)\s+([^}\s:]+)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^(```|~~~)")


def strip_code(text):
    """The text without fenced code blocks and inline code spans."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def anchor(heading):
    text = re.sub(r"<[^>]+>", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).replace("`", "")
    text = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path):
    ids, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            base, n = anchor(m.group(1)), 1
            a = base
            while a in ids:
                a, n = f"{base}-{n}", n + 1
            ids.add(a)
    return ids


def main():
    src = Path(sys.argv[1]).resolve()
    bad = []
    for md in sorted(src.rglob("*.md")):
        raw = md.read_text(encoding="utf-8")
        for target in INCLUDE.findall(raw):
            if not (md.parent / target).resolve().exists():
                bad.append(f"{md.relative_to(src)}: include `{target}` does not exist")
        text = strip_code(raw)
        for target in LINK.findall(text) + REF.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue
            file, _, frag = target.partition("#")
            dest = (md.parent / file).resolve() if file else md
            if not dest.exists():
                bad.append(f"{md.relative_to(src)}: link `{target}`: no file {file}")
            elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                bad.append(f"{md.relative_to(src)}: link `{target}`: no heading #{frag}")
    summary = src / "SUMMARY.md"
    for target in LINK.findall(summary.read_text(encoding="utf-8")):
        if target and not (src / target).exists():
            bad.append(f"SUMMARY.md: chapter `{target}` does not exist")
    for b in bad:
        print(b)
    print(f"links: {len(bad)} broken")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
