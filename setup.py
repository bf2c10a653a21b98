"""Build hook only (metadata lives in pyproject.toml): ship the top-level recipes/ folder inside the wheel.

recipes/ stays beside the package in the repository, where users read and edit it; a wheel gets a copy as
mertool/recipes/, which mertool.paths.recipes_dir() finds when there is no checkout around the package.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithRecipes(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads <checkout>/recipes directly
            return
        shutil.copytree(ROOT / "recipes", Path(self.build_lib) / "mertool" / "recipes", dirs_exist_ok=True,
                        ignore=lambda folder, names: [n for n in names if not (n.endswith((".yaml", ".csv"))
                                                                               or (Path(folder) / n).is_dir())])


setup(cmdclass={"build_py": BuildPyWithRecipes})
