"""Fully asynchronous RL, in layers; every import points down this list, never up.

algo/       pure maths on tensors and records: types, packing, batching, advantages, loss, logprobs, rewards
trainers/   the Trainer interface and its backends (torch in-process, DeepSpeed ZeRO on Ray); imports algo
system/     the asynchronous system: controller, rollout workers, staleness control, weight sync, dataset,
            checkpoints, metric log, curves; imports trainers (through the interface) and algo
train.py    `asearcher train`: wires the system together
warmstart/  `asearcher sft`: the SFT warm start on oracle trajectories, a CPU-smoke-only deviation from the paper
"""
