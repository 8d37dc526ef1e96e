#!/usr/bin/env bash
# Run a command inside a Ray cluster spanning this SLURM allocation; outside SLURM (or on one node) just run it.
#
#   ray_on_slurm.sh asearcher train --config ...
#
# On a multi-node allocation: a Ray head on the first node and one Ray worker per other node (started with srun,
# each owning its node's GPUs), then the command runs on the head node with RAY_ADDRESS set, so the trainer's
# DeepSpeed ranks and the vLLM rollout actors are placed across all nodes by Ray.
set -euo pipefail

nodes="${SLURM_JOB_NUM_NODES:-1}"
if [[ "${nodes}" -le 1 || -z "${SLURM_JOB_NODELIST:-}" ]]; then
  exec "$@"
fi

mapfile -t hosts < <(scontrol show hostnames "${SLURM_JOB_NODELIST}")
head="${hosts[0]}"
head_ip="$(srun --nodes=1 --ntasks=1 -w "${head}" hostname --ip-address | awk '{print $1}')"
port="${RAY_PORT:-6379}"
export RAY_ADDRESS="${head_ip}:${port}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
gpus="${SLURM_GPUS_ON_NODE:-8}"
cpus="${SLURM_CPUS_ON_NODE:-16}"

cleanup() { ray stop --force >/dev/null 2>&1 || true; kill 0 2>/dev/null || true; }
trap cleanup EXIT

echo "[ray_on_slurm] head ${head} (${RAY_ADDRESS}), ${nodes} nodes, ${gpus} GPUs/node" >&2
srun --nodes=1 --ntasks=1 -w "${head}" ray start --head --node-ip-address="${head_ip}" --port="${port}" \
  --num-gpus="${gpus}" --num-cpus="${cpus}" --block &
sleep 15
for h in "${hosts[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "${h}" ray start --address="${RAY_ADDRESS}" \
    --num-gpus="${gpus}" --num-cpus="${cpus}" --block &
done
sleep 15
"$@"
