"""`python -m orderspace_sandbox [flags]`."""

import sys

from orderspace_sandbox.cli import main

if __name__ == "__main__":
    sys.exit(main())
