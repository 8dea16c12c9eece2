#!/usr/bin/env bash
# Refresh the digest's message catalogue after changing its words:
# extract every message from monitor/digest.py, monitor/health.py (feed errors) and the templates into monitor/locale/monitor.pot,
# then merge it into each language's .po (new messages arrive untranslated; tests/test_digest_i18n.py
# fails until they are translated).
set -euo pipefail
cd "$(dirname "$0")/.."
pybabel extract -F babel.cfg -k ngettext:1,2 -k gettext --no-location --sort-output \
    --project monitor --copyright-holder "monitor contributors" -o monitor/locale/monitor.pot .
pybabel update -i monitor/locale/monitor.pot -d monitor/locale -D monitor -w 100 --no-fuzzy-matching --ignore-obsolete
