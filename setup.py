"""Build the C fast path extension; everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import Extension, setup

_SOURCE = Path(__file__).parent / "appliance" / "dataplane" / "_fastpath.c"

ext_modules = []
if _SOURCE.exists():
    ext_modules.append(
        Extension(
            "appliance.dataplane._fastpath",
            sources=["appliance/dataplane/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
        )
    )

setup(ext_modules=ext_modules)
