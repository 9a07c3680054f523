"""Alignment data: sample K answers per prompt and rank them (a human, a rule, ratings, demos, a judge).

    gptlab rank generate   K samples per prompt from an SFT model   -> candidates JSONL
    gptlab rank label      a person orders them in the terminal      -> rankings JSONL
    gptlab rank rule       K samples per task prompt ranked by the task's reward
    gptlab rank ratings    chitchat chats on one opening prompt ranked by their 1-10 ratings
    gptlab rank demos      a person's written reply above the model's samples, each cut within the shorter
    gptlab rank judge      candidates ranked by a judge model's yes/no preference
    gptlab rank agree      how far two rankings files agree (a judge vs people): kappa, Kendall tau, top-1

Every ranking file is the `ranked` JSONL of gptlab.data.preferences, which the reward stage
(`gptlab reward train`) and DPO read.
"""
