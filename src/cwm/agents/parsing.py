"""Pulling the program out of an LLM's reply.

Takes the section after ``## Correct code`` when there is one (improve and fix replies), drops
``<think>`` blocks, and returns the longest fenced Python block; an unterminated last block (a reply cut
by ``max_tokens``) still counts. With no fence at all, the reply itself is used when it parses as Python
and defines ``Environment``. Returns None when no program can be found.
"""

from __future__ import annotations

import ast
import re

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def extract_program(text: str) -> str | None:
    text = _THINK.sub("", text)
    marker = re.search(r"^#+\s*correct code\s*$", text, re.M | re.I)
    section = text[marker.end():] if marker else text
    blocks = [b.strip("\n") for b in _FENCE.findall(section)]
    if not blocks and marker:
        blocks = [b.strip("\n") for b in _FENCE.findall(text)]
    blocks = [b for b in blocks if b.strip()]
    if blocks:
        best: str = max(blocks, key=len)
        return best.rstrip() + "\n"
    stripped = text.strip()
    if "class Environment" in stripped:
        try:
            ast.parse(stripped)
        except SyntaxError:
            return None
        return stripped + "\n"
    return None
