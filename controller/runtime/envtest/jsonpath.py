"""The JSONPath subset CRD printer columns use: ``.a.b``, ``[n]``, ``[*]``, ``['key']`` and ``[?(@.x=="y")]``."""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(
    r"""\.\.?(?P<field>[A-Za-z0-9_\-/$]+)   # .field
      | \[(?P<index>-?\d+|\*)\]              # [0] or [*]
      | \[['"](?P<key>[^'"]+)['"]\]          # ['key']
      | \[\?\(@\.(?P<fpath>[A-Za-z0-9_.\-]+)\s*(?P<op>==|!=)\s*(?P<value>"[^"]*"|'[^']*'|[^)\s]+)\)\]
      | \.\*                                 # .*
    """,
    re.VERBOSE,
)


def _tokens(path: str) -> list[re.Match[str]]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path.removeprefix("$")
    if path and not path.startswith((".", "[")):
        path = "." + path
    out = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        out.append(m)
        pos = m.end()
    return out


def _get_field(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def evaluate(path: str, obj: Any) -> list[Any]:
    """All values ``path`` selects in ``obj`` (empty when nothing matches or the path is unsupported)."""
    try:
        tokens = _tokens(path)
    except ValueError:
        return []
    current = [obj]
    for tok in tokens:
        nxt: list[Any] = []
        for value in current:
            if tok.group("field") is not None:
                if isinstance(value, dict) and tok.group("field") in value:
                    nxt.append(value[tok.group("field")])
            elif tok.group("key") is not None:
                if isinstance(value, dict) and tok.group("key") in value:
                    nxt.append(value[tok.group("key")])
            elif tok.group("index") is not None:
                if not isinstance(value, list):
                    continue
                if tok.group("index") == "*":
                    nxt.extend(value)
                else:
                    i = int(tok.group("index"))
                    if -len(value) <= i < len(value):
                        nxt.append(value[i])
            elif tok.group("fpath") is not None:
                if not isinstance(value, list):
                    continue
                want = tok.group("value").strip("'\"")
                for item in value:
                    got = _get_field(item, tok.group("fpath"))
                    text = ("true" if got else "false") if isinstance(got, bool) else str(got)
                    if (got is not None and text == want) == (tok.group("op") == "=="):
                        nxt.append(item)
            else:  # .*
                if isinstance(value, dict):
                    nxt.extend(value.values())
                elif isinstance(value, list):
                    nxt.extend(value)
        current = nxt
    return current
