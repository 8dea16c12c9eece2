"""Where character N of a text value is in the file.

A query error knows its offset in the query text; this maps that offset back
through YAML's quoting, escapes, line folding and block scalars to a
line and column of feeds.yaml.
"""

from __future__ import annotations

from monitor.config.yaml_tree import Loc, Position, _Positions


def _position_in_scalar(loc: Loc, offset: int, positions: _Positions) -> Position:
    """The file position of character `offset` of the text value at `loc`."""
    start = positions.of_value(loc)
    if loc in positions.substituted or loc not in positions.values:
        return start
    lines = positions.source_lines
    line, column = start
    indicator = lines[line][column : column + 1] if line < len(lines) else ""
    if indicator in ("|", ">"):
        return _position_in_block_scalar(lines, line, offset)
    return _position_in_flow_scalar(lines, line, column, indicator, offset)


def _position_in_flow_scalar(
    lines: list[str], line: int, column: int, quote: str, offset: int
) -> Position:
    """Walk a plain, 'single' or "double" quoted scalar: escapes and '' take several
    source characters for one; a line break folds into one space (or one newline per
    blank line)."""
    quote = quote if quote in ("'", '"') else ""
    if quote:
        column += 1
    remaining = offset
    while remaining > 0 and line < len(lines):
        text = lines[line]
        if not text[column:].strip():
            following, blank_lines = line + 1, 0
            while following < len(lines) and not lines[following].strip():
                following, blank_lines = following + 1, blank_lines + 1
            if following >= len(lines):
                break
            line = following
            column = len(lines[line]) - len(lines[line].lstrip())
            remaining -= max(1, blank_lines)
            continue
        character = text[column]
        if quote == "'" and text.startswith("''", column):
            column += 2
        elif quote == '"' and character == "\\":
            escape = text[column + 1 : column + 2]
            if not escape:  # an escaped line break joins the lines without a space
                line += 1
                column = len(lines[line]) - len(lines[line].lstrip()) if line < len(lines) else 0
                continue
            column += {"x": 4, "u": 6, "U": 10}.get(escape, 2)
        else:
            column += 1
        remaining -= 1
    return (line, column)


def _position_in_block_scalar(lines: list[str], indicator_line: int, offset: int) -> Position:
    """Walk a | or > block: each content line maps one to one, each line break is one
    character (folding turns it into a space, which has the same length)."""
    line = indicator_line + 1
    while line < len(lines) and not lines[line].strip():
        line += 1
    if line >= len(lines):
        return (indicator_line, 0)
    indent = len(lines[line]) - len(lines[line].lstrip())
    remaining = offset
    line = indicator_line + 1
    while line < len(lines):
        content = lines[line][indent:]
        if remaining <= len(content):
            return (line, indent + remaining)
        remaining -= len(content) + 1
        line += 1
    return (len(lines) - 1, indent)
