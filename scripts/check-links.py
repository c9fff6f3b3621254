#!/usr/bin/env python3
"""Every relative link in README.md and docs/*.md must resolve: the file (or folder)
exists in the repository, and a `#fragment` names a heading of the target Markdown file
(GitHub's anchors: lowercase, punctuation dropped, spaces as `-`). Links out of the
repository (`../` above its root) fail too. Prints each broken link and exits 1."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")


def strip_code(text):
    """The text without fenced blocks and inline code, where brackets are not links."""
    text = re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def heading_text(path):
    """Headings keep their inline code for the anchor: read them from the raw text."""
    raw = re.sub(r"^ *```.*?^ *```", "", path.read_text(), flags=re.S | re.M)
    seen, out = {}, set()
    for m in re.finditer(r"^#+ (.*)$", raw, re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def check(files):
    broken = []
    for path in files:
        for target in LINK.findall(strip_code(path.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, fragment = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            rel = path.relative_to(ROOT)
            if ROOT not in dest.parents and dest != ROOT:
                broken.append(f"{rel}: {target}: leaves the repository")
            elif not dest.exists():
                broken.append(f"{rel}: {target}: no such file")
            elif fragment and (dest.suffix != ".md" or fragment not in heading_text(dest)):
                broken.append(f"{rel}: {target}: no heading with that anchor")
    return broken


def main():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = check(files)
    for line in broken:
        print(line)
    print(f"links: {len(files)} files checked, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
