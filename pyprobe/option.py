"""One row of the option table (pyprobe/settings.py assembles the table; pyprobe/generate/
options.py holds pyprobe generate's own rows)."""

from collections import namedtuple

PROBE = frozenset({"probe"})
GENERATE = frozenset({"generate"})
BOTH = PROBE | GENERATE


class Option(namedtuple("Option", "name flags section parse default help metavar kind group key const commands "
                                   "aliases", defaults=(None, "", None, "value", "probe", None, None, PROBE, ()))):
    """One setting. flags: its command-line flags (none: config file only); section and
    key: its place in the TOML file (section None: flags only; key default: name); aliases:
    other keys the file may name it by (its old names). kind:
    'value' (one argument), 'switch' (a flag without argument), 'list' (repeatable flag),
    'files' (-r: one or more paths, repeatable), 'optional' (an argument that may be left
    out: const). group: the --help group (probe, export, output); commands: which commands
    have it (probe, generate)."""

    __slots__ = ()

    @property
    def toml_key(self):
        return self.key or self.name

    def where(self, from_flag):
        return ("/".join(self.flags) or self.name) if from_flag else f"[{self.section}] {self.toml_key}"
