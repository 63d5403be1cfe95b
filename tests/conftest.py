"""Shared fixtures. ``tests/support`` holds helpers (servers, the SCIM target, the fault proxy)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "support"))
