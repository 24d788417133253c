"""Concrete tools shipped with agentrl (installed as ``agentrl.tools``)."""
