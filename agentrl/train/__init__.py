"""agentrl.train (under construction in this wave)."""

__all__: list[str] = []
