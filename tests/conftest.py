"""Test folders are not packages: the helper modules of tests/ itself (launching.py) are put on the path for
every folder, after everything else, so they never shadow a real package."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
