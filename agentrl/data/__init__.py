"""agentrl.data (under construction in this wave)."""

__all__: list[str] = []
