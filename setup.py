"""Build the Cython capture reader, flow meter, export packer and datagram sender (ext/_*.pyx) into the pyprobe package.

ext/record.pxd, the packed flow record, ext/meter/measures.pxi, what the meter
measures for each field, and ext/codes.pxd, the end reasons, ignore reasons, TCP flags
and ICMP protocols, are written first from the field table (pyprobe/fields.py), so
each has one definition."""
import importlib.util
import os
import pathlib

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = pathlib.Path(__file__).parent


def write_generated():
    spec = importlib.util.spec_from_file_location("pyprobe_fields", HERE / "pyprobe" / "fields.py")
    fields = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fields)
    for target, text in ((HERE / "ext" / "record.pxd", fields.record_pxd()),
                         (HERE / "ext" / "codes.pxd", fields.codes_pxd()),
                         (HERE / "ext" / "meter" / "measures.pxi", fields.measures_pxi())):
        if not target.exists() or target.read_text() != text:     # unchanged: keep the build cache valid
            target.write_text(text)


write_generated()
# PYPROBE_SANITIZE=1 (make fuzz): bounds-checked Cython, AddressSanitizer and libFuzzer
# coverage (CC=clang), for the fuzz target in tests/fuzz/ run under atheris.
SANITIZE = os.environ.get("PYPROBE_SANITIZE") == "1"
CFLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,fuzzer-no-link"] if SANITIZE else ["-O3"]
LDFLAGS = ["-fsanitize=address,fuzzer-no-link"] if SANITIZE else []
extensions = [
    Extension("pyprobe._meter", ["ext/_meter.pyx"], extra_compile_args=CFLAGS, extra_link_args=LDFLAGS),
    Extension("pyprobe._capture", ["ext/_capture.pyx"], extra_compile_args=CFLAGS, extra_link_args=LDFLAGS),
    Extension("pyprobe._encode", ["ext/_encode.pyx"], extra_compile_args=CFLAGS, extra_link_args=LDFLAGS),
    Extension("pyprobe._transport", ["ext/_transport.pyx"], extra_compile_args=CFLAGS, extra_link_args=LDFLAGS),
    Extension("pyprobe._generate", ["ext/_generate.pyx"], extra_compile_args=CFLAGS, extra_link_args=LDFLAGS,
              libraries=["m"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        include_path=["ext"],
        compiler_directives={"boundscheck": SANITIZE, "wraparound": SANITIZE, "cdivision": True},
        build_dir="build/fuzz/c" if SANITIZE else None,      # the C of the checked build apart
        force=SANITIZE,
    ),
)
