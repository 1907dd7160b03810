"""Who may read the option table: the modules that build settings from it (the commands and
their help pages). Every stage takes a frozen Settings and parses its own values with
pyprobe/parsers.py, so that a stage never sits in an import cycle with the table."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pyprobe"
# cli.py and daemon.py parse the flags into Settings (daemon again on SIGHUP), manpage.py
# reads the table for the manual pages, help.py for --help.
BUILDERS = {"cli.py", "daemon.py", "manpage.py", "help.py", "settings.py"}


def imported(path, package=PACKAGE):
    """The dotted names of every module a source file imports, at any depth (an import inside a
    function counts: it still ties the module to the table)."""
    here = ("pyprobe",) + path.relative_to(package).parent.parts       # the file's package
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else ()
            module = ".".join(base + ((node.module,) if node.module else ()))
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}      # (from . import settings)
    return names


def readers_of_the_table(package=PACKAGE):
    stages = (path for path in package.rglob("*.py") if path.parent != package or path.name not in BUILDERS)
    return sorted(str(path.relative_to(package)) for path in stages if "pyprobe.settings" in imported(path, package))


def test_only_the_commands_import_the_option_table():
    assert readers_of_the_table() == []


def test_the_import_reader_resolves_relative_imports(tmp_path):
    """The check itself: each way of writing an import of the table is seen."""
    package = tmp_path / "pyprobe"
    (package / "source").mkdir(parents=True)
    (package / "probe.py").write_text("from .settings import BY_NAME\n")
    (package / "source" / "live.py").write_text("def f():\n    from ..settings import InterfaceSpec\n")
    (package / "source" / "__init__.py").write_text("from .. import settings\n")
    (package / "metrics.py").write_text("import pyprobe.settings\n")
    (package / "routes.py").write_text("from .parsers import whole_number\nfrom . import parsers\n")
    (package / "cli.py").write_text("from . import settings\n")
    assert readers_of_the_table(package) == ["metrics.py", "probe.py", "source/__init__.py", "source/live.py"]
