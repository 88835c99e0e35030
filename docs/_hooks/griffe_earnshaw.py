"""griffe extension: earnshaw's docstrings, as written for ``help()`` and doctest, shown in Markdown.

The docstrings use Google sections (``Args:``, ``Returns:``) and plain ``>>>`` examples (they run as
doctests), and Sphinx roles (``:class:`Student```). Before griffe parses a docstring, this turns
every block of ``>>>`` lines and their output into a ``pycon`` code block, and every role into inline
code, so that the reference renders them as code instead of nested block quotes and stray colons.
"""
from __future__ import annotations

import inspect
import re

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc|const):`~?([^`]+)`")


def _role(match):
    target = match.group(1)
    return f"``{target.rsplit('.', 1)[-1] if match.group(0).count('~') else target}``"


def markdown_docstring(text: str) -> str:
    """Fence doctest blocks (a ``>>>`` line up to the next blank line) and turn roles into code."""
    text = _ROLE.sub(_role, text)
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = line[:len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
                i += 1
            out += [indent + "```pycon"] + [indent + b for b in block] + [indent + "```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _borrowed(node, obj) -> bool:
    """An attribute whose "docstring" is its value's type's (``float``, ``tuple``, ...), found by inspection."""
    value = getattr(node, "obj", None)
    if not isinstance(obj, griffe.Attribute) or value is None or obj.docstring is None:
        return False
    own = inspect.getdoc(type(value))
    return own is not None and inspect.cleandoc(obj.docstring.value) == own


class EarnshawDocstrings(griffe.Extension):
    def on_instance(self, *, node, obj, **kwargs):
        if _borrowed(node, obj):
            # a dataclass field's default value is not documentation; the class's Attributes: section is
            obj.docstring = None
        elif obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
