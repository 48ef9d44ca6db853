"""Version of livekit-plugins-caesura (kept in step with the core ``caesura`` package)."""

__version__ = "0.1.0"
