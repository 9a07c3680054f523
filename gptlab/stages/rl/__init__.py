"""`gptlab rl ppo|dpo|grpo`: align the SFT model, against a frozen copy of itself.

    gptlab rl ppo  --run tiny                     # RM reward - beta * KL, critic + GAE -> runs/tiny/rl
    gptlab rl grpo --run tiny --tasks arithmetic  # verifiable reward, group advantages
    gptlab rl dpo  --run tiny                     # preference pairs of runs/tiny/rankings/*.jsonl
    gptlab rl ppo  --run tiny --resume            # continue at the last rollout iteration

Each command is a config dataclass (`PPOArgs`, `DPOArgs`, `GRPOArgs`, sharing `RLArgs`) and a
builder, run through `gptlab.train.stage.run_stage` and the one training loop; the algorithms
themselves are libraries in `gptlab.algos`. DPO is an offline loss over pairs; PPO and GRPO feed
the loop an on-policy iterator (`gptlab.algos.rollout.OnPolicyBatches`) that samples a rollout
batch with the current policy through the KV-cache engine, then serves it as a few epochs of
minibatches. One optimiser step is one minibatch; one logged row is one rollout iteration, and
`--steps` counts rollout iterations for PPO and GRPO (optimizer steps for DPO).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gptlab.commandline import dispatch

COMMANDS = {
    "ppo": ("gptlab.stages.rl.ppo", "PPO against the reward model: per-token KL to the SFT model, a critic, GAE"),
    "dpo": ("gptlab.stages.rl.dpo", "DPO on the preference pairs of rankings files"),
    "grpo": ("gptlab.stages.rl.grpo", "GRPO on verifiable task rewards: group-relative advantages, no critic"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(COMMANDS, sys.argv[1:] if argv is None else argv, "gptlab rl")
