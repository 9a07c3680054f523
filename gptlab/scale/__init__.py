"""Scale: hyperparameter sweeps with pruning (`gptlab sweep`) and Chinchilla-style scaling laws
(`gptlab scaling`), both built on the pretrain stage's own code path, run in-process.

    runner.py          one pretraining run through `gptlab.stages.pretrain`, reporting val loss as it goes
    options.py         the options both commands share (data, shapes, precision, seed)
    sweep.py           the Optuna study: search space, sampler, pruner, resume
    sweep_report.py    trials.jsonl, the markdown table and trials.png
    sweep_cli.py       `gptlab sweep`
    scaling_fit.py     L(N, D) = E + A/N^alpha + B/D^beta: the fit and the compute-optimal split
    scaling.py         the series of runs (sizes x compute budgets), resumable
    scaling_report.py  the table and scaling.png
    scaling_cli.py     `gptlab scaling`
"""
