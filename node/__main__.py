"""`python -m node` and the `kabuto` console script: see node/cli.py for the commands and exit codes."""

import sys

from node.cli import main as _main


def main(argv: list[str] | None = None) -> int:
    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())
