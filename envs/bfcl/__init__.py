"""BFCL v4 (Berkeley Function Calling Leaderboard) as agentrl environments.

Ids: ``agentrl/BFCL-<category>-v0`` for the single-turn categories in
:data:`~agentrl.envs.bfcl.data.SINGLE_TURN` and the multi-turn ones in
:data:`~agentrl.envs.bfcl.data.MULTI_TURN`. The data is read from the ``bfcl-eval`` wheel
in the agentrl cache (``agentrl data fetch bfcl``); registering is cheap (no data read).
"""

from agentrl.registry import register_env

__all__ = ["SINGLE_TURN_IDS", "MULTI_TURN_IDS", "env_id"]

_SINGLE = (
    "simple_python", "simple_java", "simple_javascript", "multiple", "parallel",
    "parallel_multiple", "irrelevance", "live_simple", "live_multiple", "live_parallel",
    "live_parallel_multiple", "live_irrelevance", "live_relevance",
)
_MULTI = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param",
          "multi_turn_long_context")


def env_id(category: str) -> str:
    """The gymnasium id of a BFCL category."""
    return f"agentrl/BFCL-{category}-v0"


SINGLE_TURN_IDS = tuple(env_id(c) for c in _SINGLE)
MULTI_TURN_IDS = tuple(env_id(c) for c in _MULTI)

for _category in _SINGLE:
    register_env(env_id(_category), "agentrl.envs.bfcl.single:BFCLSingleTurnEnv",
                 kwargs={"category": _category},
                 description=f"BFCL v4 {_category}: single-turn function calling (AST check).")
for _category in _MULTI:
    register_env(env_id(_category), "agentrl.envs.bfcl.multi:BFCLMultiTurnEnv",
                 kwargs={"category": _category},
                 description=f"BFCL v4 {_category}: multi-turn tools on stateful backends.")
