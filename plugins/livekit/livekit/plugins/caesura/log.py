"""The plugin's logger: every log line of livekit-plugins-caesura goes through it."""

from __future__ import annotations

import logging

__all__ = ["logger"]

logger = logging.getLogger("livekit.plugins.caesura")
