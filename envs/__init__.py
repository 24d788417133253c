"""Concrete environments (installed as ``agentrl.envs``); registering them is cheap.

Entry points are strings, so registering does not import the environment modules.
"""

from agentrl.registry import register_env

register_env(
    "agentrl/Calculator-v0",
    "agentrl.envs.calculator:CalculatorEnv",
    description="Arithmetic word problems solved with a calculator tool (3 difficulty levels).",
)
register_env(
    "agentrl/GuessNumber-v0",
    "agentrl.envs.guess_number:GuessNumberEnv",
    description="Guess a secret number from higher/lower feedback; per-turn rewards.",
)
register_env(
    "agentrl/PythonInterpreter-v0",
    "agentrl.envs.python_interpreter:PythonInterpreterEnv",
    description="Math/data questions solved with a persistent sandboxed Python session.",
)
register_env(
    "agentrl/HumanEval-v0",
    "agentrl.envs.humaneval:HumanEvalEnv",
    description="HumanEval: write a Python function; hidden tests run in a fresh sandbox.",
)

import agentrl.envs.bfcl  # noqa: E402,F401  (registers agentrl/BFCL-<category>-v0)
register_env("agentrl/SQL-v0", "agentrl.envs.sql:SQLEnv")
