"""The asynchronous RL system: the controller drives Ray rollout workers under the staleness bound, trains on
finished groups, publishes weights and writes checkpoints and metrics."""
