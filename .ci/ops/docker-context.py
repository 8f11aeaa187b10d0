#!/usr/bin/env python3
"""Copies the Docker build context, as .dockerignore leaves it, to a folder,
and checks that it holds what `cargo build --release --locked --bins` reads:
the manifests, build.rs and proto/, and every file that src/ includes at
compile time (include_str!, include_bytes!, sqlx::migrate!). No Docker
engine is needed; `.ci/ops-check` then runs `cargo metadata --no-deps` in it.

    docker-context.py DEST
"""
import fnmatch
import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ["Cargo.toml", "Cargo.lock", "build.rs", "proto", "src", "migrations", "Dockerfile"]


def patterns():
    out = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.rstrip("/"))
    return out


def ignored(rel, pats):
    for p in pats:
        if p.startswith("**/"):
            if any(fnmatch.fnmatch(part, p[3:]) for part in rel.split("/")):
                return True
        elif fnmatch.fnmatch(rel, p) or rel.startswith(p + "/"):
            return True
    return False


def main():
    dest = Path(sys.argv[1])
    if dest.exists():
        shutil.rmtree(dest)
    pats = patterns()
    copied = 0
    for d, dirs, files in os.walk(ROOT):
        reld = os.path.relpath(d, ROOT)
        reld = "" if reld == "." else reld
        dirs[:] = [x for x in dirs if not ignored(os.path.join(reld, x) if reld else x, pats)]
        for f in files:
            rel = os.path.join(reld, f) if reld else f
            if ignored(rel, pats):
                continue
            (dest / reld).mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
            copied += 1
    failures = [f"{r} is not in the build context" for r in REQUIRED if not (dest / r).exists()]
    # Files the compiler reads through macros, relative to the including file
    # (include_*) or to the crate root (sqlx::migrate!).
    outside = 0
    for src in (ROOT / "src").rglob("*.rs"):
        text = src.read_text(encoding="utf-8")
        for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"', text):
            target = (src.parent / m.group(1)).resolve()
            if ROOT not in target.parents:
                outside += 1  # test fixtures under ../shared: not part of a release build
                continue
            if not (dest / target.relative_to(ROOT)).exists():
                failures.append(f"{src.relative_to(ROOT)} includes {m.group(1)}, which is not in the context")
        for m in re.finditer(r'migrate!\(\s*"([^"]+)"', text):
            if not (dest / m.group(1)).exists():
                failures.append(f"{src.relative_to(ROOT)} embeds {m.group(1)}, which is not in the context")
    for f in failures:
        print(f"    FAIL {f}")
    print(f"    {copied} files in the context; compile-time includes present"
          + (f" ({outside} test-only include(s) outside the repository skipped)" if outside else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
