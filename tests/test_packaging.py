"""What `pip install .` gives: the sdist carries recipes/, the wheel built from it carries mertool/recipes, and
recipe names (casme2, demo, every ablation table with its model files) resolve from the installed package alone."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "mertool", "recipes")

CHECK = """
import sys
from pathlib import Path
import mertool, mertool.paths
from mertool.recipe import find_recipe, load_recipe
from mertool.reports.ablate import load_table, variant_recipe
site = Path(sys.argv[1]).resolve()
assert Path(mertool.__file__).resolve().is_relative_to(site), mertool.__file__
assert mertool.paths.recipes_dir() == site / "mertool" / "recipes", mertool.paths.recipes_dir()
for name in ("casme2", "samm", "demo"):
    load_recipe(name)
tables = sorted(p.stem for p in (site / "mertool" / "recipes" / "ablations").glob("*.yaml"))
assert tables, "no ablation tables in the wheel"
for t in tables:
    table = load_table(f"ablations/{t}")
    for base in table.base.values():
        for v in table.variants:
            variant_recipe(table, v, base)
print("resolved", ",".join(tables))
"""


def _build(source: Path, out: Path, kind: str) -> Path:
    """setuptools' PEP 517 backend without isolation (no network needed): the venv's setuptools builds it."""
    code = (f"from setuptools import build_meta as b; import sys; "
            f"print(b.build_{kind}(sys.argv[1]))")
    r = subprocess.run([sys.executable, "-c", code, str(out)], cwd=source, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out / r.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_sdist_and_wheel_ship_the_recipes(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    dist = tmp_path / "dist"
    dist.mkdir()
    sdist = _build(src, dist, "sdist")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        assert f"{top}/recipes/casme2.yaml" in names and f"{top}/setup.py" in names
        tar.extractall(tmp_path / "unpacked", filter="data")
    wheel = _build(tmp_path / "unpacked" / top, dist, "wheel")  # the wheel pip builds from the sdist
    with zipfile.ZipFile(wheel) as z:
        yaml_files = [n for n in z.namelist() if n.endswith(".yaml")]
        repo_yaml = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "recipes").rglob("*.yaml"))
        assert sorted(n.removeprefix("mertool/") for n in yaml_files) == repo_yaml
        assert "mertool/recipes/lists/megc2019_combined_3class_gt.csv" in z.namelist()  # the official list
        site = tmp_path / "site"
        z.extractall(site)
    # run from an empty folder with only the unpacked wheel importable: no checkout's recipes/ to fall back on
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = subprocess.run([sys.executable, "-c", CHECK, str(site)], cwd=work, capture_output=True, text=True,
                       timeout=300, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "table2" in r.stdout and "table7" in r.stdout
