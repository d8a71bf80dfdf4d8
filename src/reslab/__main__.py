"""`python -m reslab ...` behaves exactly like the `reslab` console script (torchrun needs this form)."""
import sys

from reslab.cli import main

if __name__ == "__main__":
    sys.exit(main())
