"""The README documents every command, every option and every configuration key."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

import monitor.config.schema as config_module
from monitor.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_and_option_is_documented(name: str) -> None:
    command = main.commands[name]
    assert f"`monitor {name}" in README, f"README does not document `monitor {name}`"
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            longest = max(parameter.opts, key=len)
            assert longest in README, f"README does not mention {longest} of `monitor {name}`"


def _keys(model: type[BaseModel], prefix: str) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        annotation = field.annotation
        nested = _model_in(annotation)
        if nested is not None and key.split(".")[-1] not in ("feeds", "watchlists", "alerts"):
            # A list of sections is documented item-wise: `digests[].name`.
            is_list = "list[" in str(annotation)
            keys.extend(_keys(nested, key + ("[]." if is_list else ".")))
        else:
            keys.append(key)
    return keys


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()) or ():
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def test_every_configuration_key_is_in_the_reference_table() -> None:
    root = config_module._ConfigModel
    keys = _keys(root, "")
    keys += [f"feeds[].{key}" for key in _keys(config_module._FeedModel, "")]
    keys += [f"watchlists[].{key}" for key in _keys(config_module._WatchlistModel, "")]
    keys += [f"alerts[].{key}" for key in _keys(config_module._AlertModel, "")]
    table = "\n".join(line for line in README.splitlines() if line.startswith("| `"))
    documented = set(re.findall(r"`([a-z_\[\].]+)`", table))
    # Rows may group keys: "`watchlists[].all` / `any` / `none`".
    for row in table.splitlines():
        first = re.match(r"\| `([a-z_\[\].]+)\.[a-z_]+`", row)
        if first:
            documented.update(f"{first.group(1)}.{key}" for key in re.findall(r"`([a-z_]+)`", row))
    missing = [
        key
        for key in keys
        if key not in documented and key not in ("feeds", "watchlists", "sets", "alerts")
    ]
    assert not missing, f"configuration keys missing from README's reference table: {missing}"
