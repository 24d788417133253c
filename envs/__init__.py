"""Concrete environments (installed as ``agentrl.envs``); registering them is cheap.

Entry points are strings, so registering does not import the environment modules. The
descriptions ``agentrl envs`` shows are the classes' ``description`` attributes.
"""

from agentrl.registry import register_env

register_env(
    "agentrl/Calculator-v0",
    "agentrl.envs.calculator:CalculatorEnv",
)
register_env(
    "agentrl/GuessNumber-v0",
    "agentrl.envs.guess_number:GuessNumberEnv",
)
register_env(
    "agentrl/PythonInterpreter-v0",
    "agentrl.envs.python_interpreter:PythonInterpreterEnv",
)
register_env(
    "agentrl/HumanEval-v0",
    "agentrl.envs.humaneval:HumanEvalEnv",
)

# The client of `agentrl serve` (agentrl.remote) is made bare, with no checker or order
# wrapper, so that the collector sees its async methods (areset/astep/aclose).
import gymnasium as _gym  # noqa: E402

import agentrl.envs.bfcl  # noqa: E402,F401  (registers agentrl/BFCL-<category>-v0)

if "agentrl/Remote-v0" not in _gym.registry:
    _gym.register(id="agentrl/Remote-v0", entry_point="agentrl.remote:RemoteEnv",
                  order_enforce=False, disable_env_checker=True)
register_env("agentrl/SQL-v0", "agentrl.envs.sql:SQLEnv")
register_env("agentrl/Search-v0", "agentrl.envs.search:SearchEnv")
register_env("agentrl/Support-v0", "agentrl.envs.support:SupportEnv")
import agentrl.envs.tau2  # noqa: E402,F401  (registers agentrl/Tau2-<domain>-v0)
