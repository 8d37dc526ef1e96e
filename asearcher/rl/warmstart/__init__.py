"""SFT warm start on oracle search trajectories: a CPU-smoke-only deviation from the paper.

A random-init tiny model never emits a well-formed search or answer, so the CPU default fine-tunes it on oracle
trajectories (and distractor twins) before RL. The paper starts RL from the base model; the paper recipes keep
`rl.sft.enabled: false`.
"""
