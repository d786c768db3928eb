"""``python -m kernelcomp``: the command line."""

import sys

from kernelcomp.cli import main

if __name__ == "__main__":
    sys.exit(main())
