"""The wheel carries what an installed hub needs: the site templates, the demo city and the migrations.

CI (.ci/run) also installs the wheel into a fresh environment and runs the demo from an empty
directory; this test says which file is missing when that fails.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from catalogue.settings import PROJECT_ROOT


# What setup.py leaves out of catalogue/bundled/ (its ignore patterns): the npm tools of the browser tests and
# the source the vendored DuckDB-WASM bundle is built from; the built files in site/static/vendor/ ship.
NOT_BUNDLED = ("__pycache__", "*.pyc", ".*", "node_modules", "vendor-src", "package*.json")


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("not a git checkout: the committed file list is unknown")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and (PROJECT_ROOT / name).is_file()]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_wheel_ships_templates_demo_city_and_migrations(tmp_path: Path) -> None:
    files = _tracked_files()
    source = tmp_path / "source"  # a copy, so no build/ folder lands in the checkout
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "wheel"),
                    str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("urbandata-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())

    setup_py = (PROJECT_ROOT / "setup.py").read_text(encoding="utf-8")
    assert all(f'"{pattern}"' in setup_py for pattern in NOT_BUNDLED), "setup.py's ignore patterns changed"
    content = {f"catalogue/bundled/{name}" for name in files if name.startswith(("site/", "datasets/"))
               and not any(fnmatch.fnmatch(part, pattern) for part in name.split("/") for pattern in NOT_BUNDLED)}
    migrations = {name for name in files if name.startswith("catalogue/meta/migrations/")}
    assert "catalogue/bundled/site/templates/base.html" in content
    assert "catalogue/meta/migrations/versions/0001_baseline.py" in migrations
    assert sorted(content - shipped) == []
    assert sorted(migrations - shipped) == []
    assert sorted(n for n in shipped if n.split("/")[0] in ("tests", "bench", "site", "datasets")) == []
