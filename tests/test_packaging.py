"""The wheel users install: its name, its command, and the data files the package reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_schemas_and_the_command(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, timeout=300)
    wheel = next(tmp_path.glob("*.whl"))
    assert wheel.name.startswith("fstore_audio-")  # "fstore" on PyPI is another project
    names = zipfile.ZipFile(wheel).namelist()
    for schema in ("root", "time", "group", "array", "failure"):
        assert f"featurestore/schemas/{schema}.json" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "fstore = featurestore.cli:main" in entry_points
