"""`python -m orderspace_pipelines.sandbox [flags]`."""

import sys

from orderspace_pipelines.sandbox.cli import main

if __name__ == "__main__":
    sys.exit(main())
