"""feeds.yaml → a validated, immutable `Config`.

Touches no network and no database. Every problem in the file is reported at
once as ``feeds.yaml:LINE:COL: message`` so the user can fix them in one go;
nothing runs on a half-valid configuration.

Each module imports only modules listed above it (in brackets), so there is no
import cycle::

    settings     the frozen dataclasses a configuration is made of
    yaml_tree    YAML → plain tree + positions, problem collector, syntax messages
    environment  ${VAR} expansion in the tree                  [yaml_tree]
    positions    character N of a text value → line and column [yaml_tree]
    references   duplicate names and URLs, unknown feed names  [yaml_tree]
    schema       pydantic models, field validators, limits     [settings, yaml_tree]
    messages     pydantic errors → positioned messages, hints  [schema, positions, yaml_tree]
    loading      bytes → text → tree → model → Config          [all of the above]
    lookup       where feeds.yaml is; the database a broken one names [loading, schema]
    lint         warnings: valid watchlists that look mistyped  [loading, positions, schema]

Names with a leading underscore are shared between these modules only; the
public API is `__all__`.
"""

from __future__ import annotations

from monitor.config.lint import lint_config
from monitor.config.loading import (
    MAX_CONFIG_BYTES,
    check_config_size,
    decode_config_bytes,
    load_config,
    parse_config,
    read_config_bytes,
)
from monitor.config.lookup import ConfigLocation, RecoveredSettings, find_config, recover_settings
from monitor.config.schema import parse_duration, parse_size
from monitor.config.settings import (
    AlertDestination,
    AlertSettings,
    Config,
    DigestSettings,
    PollSettings,
    RetentionSettings,
    SmtpSettings,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "AlertDestination",
    "AlertSettings",
    "Config",
    "ConfigLocation",
    "DigestSettings",
    "PollSettings",
    "RecoveredSettings",
    "RetentionSettings",
    "SmtpSettings",
    "check_config_size",
    "decode_config_bytes",
    "find_config",
    "lint_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "read_config_bytes",
    "recover_settings",
]
