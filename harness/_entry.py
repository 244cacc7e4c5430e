"""The `harness` command's entry point: the CLI module imports pandas, pydantic and more, which takes a
moment; Ctrl-C in that moment is an interruption like any other, one line, not an import traceback."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from harness.cli import main as cli_main
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return cli_main()
