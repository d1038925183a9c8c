"""A program's identity up to layout: the key that recognises a duplicate child without running it.

Two replies that differ only in whitespace, blank lines, comments or indentation width are the same
program; scoring the second one again would cost a sandbox run and tell the search nothing. The key is
a hash of the program's syntax tree (``ast.dump``: comments and layout are gone, code is not). A reply
that does not parse falls back to its tokens without comments (``tokenize``), and a reply that cannot
even be tokenized to its lines with runs of whitespace collapsed. Parsing never executes the program;
pathological inputs (deep nesting, huge literals) are caught and fall through to the next level.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize

_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
_WS = re.compile(r"\s+")


def _by_ast(source: str) -> str | None:
    try:
        return "ast:" + ast.dump(ast.parse(source), annotate_fields=False, include_attributes=False)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def _by_tokens(source: str) -> str | None:
    try:
        parts = []
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in _SKIP:
                continue
            # INDENT carries the indentation text; its width does not change the program
            parts.append(tokenize.tok_name[tok.type] if tok.type in (tokenize.INDENT, tokenize.DEDENT)
                         else tok.string)
        return "tok:" + "\x00".join(parts)
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _by_whitespace(source: str) -> str:
    lines = (_WS.sub(" ", line).strip() for line in source.splitlines())
    return "ws:" + "\n".join(line for line in lines if line)


def normalized(source: str) -> str:
    """The program with layout and comments removed (the text the key is a hash of)."""
    return _by_ast(source) or _by_tokens(source) or _by_whitespace(source)


def program_key(source: str) -> str:
    """A short stable hash of ``normalized(source)``: equal for programs that differ only in layout."""
    return hashlib.sha256(normalized(source).encode("utf-8", "surrogatepass")).hexdigest()[:20]
