__version__ = "0.1.0"

# Old module paths (mertool.train, mertool.evaluate, ...) import the moved modules for one release: mertool/_moved.py
from mertool import _moved

_moved.install()
