"""The wheel carries what an installed hub needs: the site templates, the demo city and the migrations.

CI (.ci/run) also installs the wheel into a fresh environment and runs the demo from an empty
directory; this test says which file is missing when that fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from catalogue.settings import PROJECT_ROOT


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

    content = {f"catalogue/bundled/{name}" for name in files if name.startswith(("site/", "datasets/"))}
    migrations = {name for name in files if name.startswith("catalogue/meta/migrations/")}
    assert "catalogue/bundled/site/templates/base.html" in content
    assert "catalogue/meta/migrations/versions/0001_baseline.py" in migrations
    assert sorted(content - shipped) == []
    assert sorted(migrations - shipped) == []
    assert sorted(n for n in shipped if n.split("/")[0] in ("tests", "bench", "site", "datasets")) == []
