#!/usr/bin/env bash
# Checks the relative links of README.md and docs/*.md: every linked file
# exists, and every #anchor names a heading of the linked Markdown file
# (GitHub's slugs: lower case, punctuation dropped, spaces to hyphens, -1,
# -2 ... for repeats). Links inside code blocks and to http(s) are skipped.
# Exit 0 only if all resolve; each broken link is printed as FILE:LINE.
#   bash scripts/check-links.sh [FILE.md ...]   # default: README.md docs/*.md
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -eq 0 ]]; then set -- README.md docs/*.md; fi
python3 - "$@" <<'PY'
import os, re, sys

def slugs(path):
    seen, out, fence = {}, set(), False
    for line in open(path, encoding="utf-8"):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        m = None if fence else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", lambda g: g.group(1) or "", m.group(1))
            s = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out

bad = 0
for src in sys.argv[1:]:
    fence = False
    for no, line in enumerate(open(src, encoding="utf-8"), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)  # code spans are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(src), path)) if path else src
            if not os.path.exists(dest):
                print(f"{src}:{no}: {target}: no file {dest}")
                bad += 1
            elif anchor and dest.endswith(".md") and anchor not in slugs(dest):
                print(f"{src}:{no}: {target}: no heading #{anchor} in {dest}")
                bad += 1
print(f"check-links: {len(sys.argv) - 1} files, {bad} broken links")
sys.exit(1 if bad else 0)
PY
