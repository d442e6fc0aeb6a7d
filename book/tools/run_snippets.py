#!/usr/bin/env python3
"""Runs the book's tested snippets.

A fenced block whose info string is `bash,tested` or `python,tested` is executed; add `mnist`
(`bash,tested,mnist`) for blocks that need MNIST, which run only when $GATEKIT_DATA is set.
The blocks of one chapter run in file order in one fresh folder (holding copies of the
repository's tasks/ and models/, like a clone), so a later block can use an earlier block's
run or export. `gtk` must be on PATH. Exit status 1 if any block fails.

Usage: run_snippets.py BOOK_SRC REPO_ROOT
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FENCE = re.compile(r"^(```+|~~~+)\s*([^\s`]*)\s*$")


def blocks(path):
    """(line, language, flags, code) of every tested block in a Markdown file."""
    out, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2), i + 1
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            j += 1
        parts = [p.strip() for p in info.split(",")]
        if "tested" in parts and parts[0] in ("bash", "python"):
            out.append((start, parts[0], set(parts[1:]), "\n".join(lines[i + 1 : j]) + "\n"))
        i = j + 1
    return out


def main():
    src, root = Path(sys.argv[1]), Path(sys.argv[2])
    have_mnist = bool(os.environ.get("GATEKIT_DATA"))
    failures, ran, skipped = 0, 0, 0
    for md in sorted(src.rglob("*.md")):
        tested = blocks(md)
        if not tested:
            continue
        work = Path(tempfile.mkdtemp(prefix="gatekit-book-"))
        for folder in ("tasks", "models"):
            shutil.copytree(root / folder, work / folder)
        rel = md.relative_to(src)
        for line, lang, flags, code in tested:
            where = f"{rel}:{line}"
            if "mnist" in flags and not have_mnist:
                print(f"skip  {where} (needs MNIST: set GATEKIT_DATA)")
                skipped += 1
                continue
            if lang == "bash":
                cmd = ["bash", "-euo", "pipefail", "-c", code]
            else:
                cmd = [sys.executable, "-c", code]
            began = time.monotonic()
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
            took = time.monotonic() - began
            ran += 1
            if proc.returncode == 0:
                print(f"ok    {where} ({lang}, {took:.1f}s)")
            else:
                failures += 1
                print(f"FAIL  {where} ({lang}, exit {proc.returncode})\n--- code:\n{code}"
                      f"--- stdout:\n{proc.stdout[-4000:]}--- stderr:\n{proc.stderr[-4000:]}")
        shutil.rmtree(work, ignore_errors=True)
    print(f"snippets: {ran} ran, {failures} failed, {skipped} skipped")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
