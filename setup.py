"""Build the Cython flow meter and export encoder (ext/*.pyx) into the pyprobe package."""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension("pyprobe._meter", ["ext/meter.pyx"], extra_compile_args=["-O3"]),
    Extension("pyprobe._encode", ["ext/encode.pyx"], extra_compile_args=["-O3"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
