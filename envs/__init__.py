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

import agentrl.envs.bfcl  # noqa: E402,F401  (registers agentrl/BFCL-<category>-v0)
register_env("agentrl/Search-v0", "agentrl.envs.search:SearchEnv")
