"""`python -m mertool.cli ...` runs the same CLI as the `mertool` command."""
import sys

from mertool.cli import main

sys.exit(main())
