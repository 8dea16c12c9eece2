"""Pydantic's validation errors → ``(position, message)`` pairs a user can act on.

Each error is placed at the key or value it concerns (or at a character inside
a query) and worded with a hint: the expected kind of value, the closest
allowed key, an example of what to write. ``${VAR}`` values are shown as
written, never expanded.
"""

from __future__ import annotations

import difflib
from datetime import date
from typing import get_args

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from monitor.config.positions import _position_in_scalar
from monitor.config.schema import _ConfigModel
from monitor.config.yaml_tree import Loc, Position, _Positions, _shown


def _describe_error(detail: ErrorDetails, positions: _Positions) -> tuple[Position, str]:
    loc: Loc = tuple(detail["loc"])
    kind = detail["type"]
    context = detail.get("ctx") or {}
    given = detail["input"]

    if loc and loc[-1] == "[key]":
        name = loc[-2]
        return positions.of_key(loc[:-1]), (
            f'bad set name "{name}": use letters, digits, _ and - without spaces, '
            "then refer to it as @name in queries and lists"
        )
    if kind == "config":
        target: Loc = loc
        if "key" in context:
            target = (*target, str(context["key"]))
        if "index" in context:
            target = (*target, int(context["index"]))
        message = _unmask(str(context["detail"]), target, positions)
        if "offset" in context:
            return _position_in_scalar(target, int(context["offset"]), positions), message
        return (positions.of_key(target) if target == loc else positions.of_value(target)), message
    if kind == "extra_forbidden":
        return positions.of_key(loc), _unknown_key_message(loc)
    if kind == "missing":
        return positions.of_key(loc[:-1]) if len(loc) > 1 else (0, 0), _missing_message(loc)

    position = positions.of_value(loc)
    what = _EXPECTED.get(kind)
    if what is not None:
        if given is None:
            message = f"{_name(loc)} is empty: give {what}, or remove the key"
        else:
            message = f"expected {what}, got {_shown(given)}"
            if kind == "string_type" and isinstance(given, int | float | bool | date):
                message += f': put it in quotes, e.g. "{_yaml_text(given)}"'
        return position, message + _shape_hint(loc, kind)
    if kind == "too_short" and len(loc) == 2 and loc[0] == "sets":
        return position, f"set {loc[1]} is empty: give it at least one term, or remove it"
    if kind in ("too_short", "string_too_short"):
        return (
            position,
            f"{_name(loc)} is empty: {_EMPTY_HINTS.get(_last_key(loc) or '', 'give a value or remove the key')}",
        )
    if kind == "literal_error":
        return position, f"{_shown(given)} is not allowed: use one of {context.get('expected')}"
    if kind == "too_long" and not isinstance(given, str):
        return position, f"too many items in {_name(loc)}: at most {context.get('max_length')}"
    if kind in ("string_too_long", "too_long"):  # a constraint after a validator: "too_long"
        return position, f"text too long: at most {context.get('max_length')} characters"
    if kind == "string_pattern_mismatch" and _last_key(loc) == "host":
        return (
            position,
            f"bad host {_shown(given)}: write only the host name, e.g. smtp.example.org",
        )
    if kind in _CUSTOM_KINDS:
        return position, str(context.get("detail", detail["msg"]))
    if kind in ("greater_than_equal", "less_than_equal"):
        low_high = "at least" if kind == "greater_than_equal" else "at most"
        bound = context.get("ge", context.get("le"))
        return position, f"{_name(loc)} must be {low_high} {bound}, got {_shown(given)}"
    return position, f"{_name(loc)}: {detail['msg']}"


_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "list_type": "a list, e.g. [one, two] or one item per line starting with -",
    "dict_type": "a mapping of names to lists",
    "model_type": "a mapping of keys (key: value, one per line)",
    "model_attributes_type": "a mapping of keys (key: value, one per line)",
    "time_type": 'a time in quotes, e.g. "07:00"',
    "bool_type": "true or false",
}
_CUSTOM_KINDS = {
    "control_character",
    "duration",
    "duration_range",
    "size",
    "url",
    "language",
    "timezone",
    "clock_time",
    "address",
    "alert_url",
    "tag",
}
_EMPTY_HINTS = {
    "feeds": "list at least one feed, each as - url: https://...",
    "watchlists": "add at least one watchlist",
    "all": "add terms or remove the key",
    "any": "add terms or remove the key",
    "none": "add terms or remove the key",
    "to": "give at least one recipient, e.g. to: [analyste@example.org]",
    "query": "write a query or remove the key",
    "urls": "give at least one Apprise URL, e.g. urls: [ntfy://ntfy.sh/your-topic]",
    "tags": "give at least one tag, e.g. tags: [afrique], or remove the key",
}
_MISSING_HINTS = {
    "url": "every feed needs one, e.g. url: https://example.org/rss",
    "name": 'every watchlist needs a unique name, e.g. name: "Togo — défense"',
    "feeds": "list the feeds to poll, each as - url: https://...",
    "watchlists": "add at least one watchlist (see the bundled feeds.yaml)",
    "digest": "add a digest: section with from: and to: (see the bundled feeds.yaml)",
    "from": "give the sender address, e.g. from: veille@example.org",
    "to": "give the recipients, e.g. to: [analyste@example.org]",
    "host": "give the SMTP server, e.g. host: smtp.example.org",
}


def _unknown_key_message(loc: Loc) -> str:
    key = str(loc[-1])
    allowed = _allowed_keys(loc[:-1])
    message = f'unknown key "{key}"'
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        message += f' (did you mean "{close[0]}"?)'
    if allowed:
        message += ": allowed here: " + ", ".join(allowed)
    return message


_ALERT_MISSING_HINTS = {
    "name": 'every alert needs a unique name, e.g. name: "Urgent Togo"',
    "watchlists": "name the watchlists whose hits it announces, e.g. watchlists: [Togo]",
    "urls": "give the Apprise URLs to send to, e.g. urls: [ntfy://ntfy.sh/your-topic]",
}


def _missing_message(loc: Loc) -> str:
    key = str(loc[-1])
    hint = (_ALERT_MISSING_HINTS if loc[:1] == ("alerts",) else _MISSING_HINTS).get(key)
    section = f" in {_name(loc[:-1])}" if len(loc) > 1 else ""
    return f'missing "{key}"{section}' + (f": {hint}" if hint else "")


def _allowed_keys(loc: Loc) -> list[str]:
    model: type[BaseModel] | None = _ConfigModel
    for step in loc:
        if isinstance(step, int) or model is None:
            continue
        fields = {field.alias or name: field for name, field in model.model_fields.items()}
        found = fields.get(step)
        model = _model_in(found.annotation) if found is not None else None
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _shape_hint(loc: Loc, kind: str) -> str:
    if kind in ("model_type", "model_attributes_type") and len(loc) == 2 and loc[0] == "feeds":
        return ': write each feed as "- url: https://..." (with name: and interval: below it if needed)'
    if kind in ("model_type", "model_attributes_type") and len(loc) == 2 and loc[0] == "watchlists":
        return ': write each watchlist as "- name: ..." followed by query: or all:/any:/none:'
    return ""


def _name(loc: Loc) -> str:
    """A short human name for the place `loc`, e.g. ``feeds[2].url``."""
    if not loc:
        return "the file"
    parts: list[str] = []
    for step in loc:
        if isinstance(step, int):
            parts.append(f"[{step + 1}]")
        else:
            parts.append(("." if parts else "") + step)
    return "".join(parts)


def _last_key(loc: Loc) -> str | None:
    for step in reversed(loc):
        if isinstance(step, str):
            return step
    return None


def _yaml_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _unmask(message: str, loc: Loc, positions: _Positions) -> str:
    """Show ``${VAR}`` as written instead of its value: environment values are secrets."""
    substitution = positions.substituted.get(loc)
    if substitution is None:
        return message
    written, value = substitution
    return message.replace(value, written) if value else message
