"""Ship the top-level ``site/`` templates and the ``datasets/`` demo city inside the wheel.

Everything else about the build is declared in pyproject.toml. The two folders stay at the
top of the repository (they are content, not code); a non-editable build copies them to
``catalogue/bundled/`` so an installed hub finds them without a checkout
(``catalogue.settings.bundled_dir``). An editable install reads them from the checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("site", "datasets")


class BuildWithBundle(build_py):
    """``build_py`` that also copies the bundled content folders into the built ``catalogue`` package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the checkout itself is on the path; catalogue.settings falls back to it
        for name in BUNDLED:
            target = Path(self.build_lib) / "catalogue" / "bundled" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "node_modules", "vendor-src", "package*.json"))


setup(cmdclass={"build_py": BuildWithBundle})
