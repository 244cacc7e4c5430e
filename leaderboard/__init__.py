"""Static leaderboard of tracked pipeline variants: `build_site` reads MLflow runs and writes the site.

The site opens from `file://` with no server and no network; `leaderboard.json` (schema:
`LeaderboardDocument`, documented in docs/leaderboard.md) is the table for other tools.
"""

from leaderboard._build import DEFAULT_TITLE, build_site
from leaderboard._document import SCHEMA_VERSION, LeaderboardDocument, VariantEntry
from leaderboard._read import LeaderboardError

__all__ = [
    "DEFAULT_TITLE",
    "SCHEMA_VERSION",
    "LeaderboardDocument",
    "LeaderboardError",
    "VariantEntry",
    "build_site",
]
