"""Render docs/configuration.md's reference table from the packaged default.yaml (keys, defaults, comments).

The YAML file is the one place where every key is written down with its default and its
meaning; the table in docs/configuration.md is generated from it so the two never disagree. A
test checks that the page holds exactly this output and that every key of the typed config
appears in it.

    python scripts/config_reference.py            # print the table
    python scripts/config_reference.py --write    # replace it in docs/configuration.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
# a key is a bare word or a quoted string (`"no":`, which YAML would otherwise read as false)
_LINE = re.compile(
    r"""^(?P<indent> *)(?P<key>[A-Za-z_][\w]*|"[^"]+"|'[^']+'):(?P<value>[^#]*?)\s*(#\s?(?P<comment>.*))?$"""
)


def rows(yaml_text: str) -> list[tuple[str, str, str]]:
    """(dotted key, default as written, comment) for every key line, comments on '...' lines joined."""
    out: list[tuple[str, str, str]] = []
    stack: list[tuple[int, str]] = []
    for line in yaml_text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        name = m["key"].strip("\"'")
        key = ".".join([k for _, k in stack] + [name])
        value = m["value"].strip()
        comment = (m["comment"] or "").strip()
        if not value:  # a section or a nested mapping
            stack.append((indent, name))
            if indent == 0 and not comment:
                continue
        out.append((key, value or "(section)", comment))
    return out


def render(yaml_text: str) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, value, comment in rows(yaml_text):
        value = value.replace("|", "\\|")
        lines.append(f"| `{key}` | `{value}` | {comment.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def main() -> int:
    table = render((REPO / "mdaq_spark" / "conf" / "default.yaml").read_text(encoding="utf-8"))
    if "--write" not in sys.argv:
        print(table)
        return 0
    page = REPO / "docs" / "configuration.md"
    text = page.read_text(encoding="utf-8")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    page.write_text(f"{before}{START}\n{table}\n{END}{after}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
