"""Imported once by the extraction workers' fork server, never by the daemon itself.

It loads what every worker needs so that workers forked from the server share
it copy-on-write instead of each loading its own: the language-identification
model (about 100 MB while loading) and the extraction code.
"""

from monitor.matching import detect_language

detect_language("Le Togo et le Bénin signent un accord de coopération.")
