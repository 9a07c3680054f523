"""RL algorithms as libraries: rollouts, PPO, DPO, GRPO and the held-out evaluation of a policy.

The `gptlab rl ppo|dpo|grpo` commands (gptlab.stages.rl) build these into the one training loop;
evaluation code (gptlab.eval) imports them too, so they live below the commands:
commands -> algos -> train -> model / tokenizer / data. Nothing here imports a command.
"""
