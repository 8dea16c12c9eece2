"""Imported once by the extraction workers' fork server, never by the daemon itself.

It loads what every worker needs so that workers forked from the server share
it copy-on-write instead of each loading its own: the language-identification
model (about 100 MB while loading) and the extraction code. It also ties the
fork server's life to the daemon's (`die_with_parent`), so that a daemon killed
with SIGKILL leaves no fork server, and so no worker, behind.
"""

from monitor.matching import detect_language
from monitor.workers import die_with_parent

die_with_parent()

detect_language("Le Togo et le Bénin signent un accord de coopération.")
