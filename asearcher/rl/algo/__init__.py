"""RL algorithm maths: pure functions over trajectories, token sequences and tensors (no Ray, no I/O)."""
