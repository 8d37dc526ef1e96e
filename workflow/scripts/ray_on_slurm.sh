#!/usr/bin/env bash
# Run a command inside a Ray cluster spanning this SLURM allocation; outside SLURM (or on one node) just run it.
#
#   ray_on_slurm.sh asearcher train --config ...
#
# On a multi-node allocation: a Ray head on the first node and one Ray worker on every other node, each a job step
# started with srun that owns its node's CPUs and GPUs; once all nodes have joined, the command runs here (the
# batch host) with RAY_ADDRESS set, so the trainer's ranks and the rollout engines are placed across all nodes by
# Ray. On exit, success or not, the steps it started are stopped.
#
# The SLURM executor plugin runs a multi-node rule (resource `mpi`) in the batch script but drops most SLURM_*
# variables from its environment, so the node list, CPUs and GPUs per node are read from `scontrol show job` when
# the variables are missing. Settings (environment):
#   RAY_PORT           the head's port (6379)
#   RAY_START_TIMEOUT  seconds to wait for the head and for every worker to join (600)
#   RAY_POLL_S         seconds between readiness checks (5)
#   RAY_GPUS_PER_NODE, RAY_CPUS_PER_NODE  override what is read from the allocation
set -euo pipefail

log() { echo "[ray_on_slurm] $*" >&2; }

if [[ -z "${SLURM_JOB_ID:-}" ]]; then
  exec "$@"
fi

job_info=""
read_job_info() { # `scontrol show job` for this job, read once (here, not inside a $(...) subshell, so it is kept)
  if [[ -z "${job_info}" ]]; then
    job_info="$(scontrol show job -o "${SLURM_JOB_ID}" 2>/dev/null || true)"
  fi
}
job_field() { # one field of the job's `scontrol show job`, e.g. job_field NumNodes
  tr ' ' '\n' <<<"${job_info}" | sed -n "s|^$1=||p" | head -n 1
}

[[ -n "${SLURM_JOB_NODELIST:-}" && -n "${SLURM_JOB_NUM_NODES:-}" ]] || read_job_info
nodelist="${SLURM_JOB_NODELIST:-$(job_field NodeList)}"
nodes="${SLURM_JOB_NUM_NODES:-$(job_field NumNodes)}"
nodes="${nodes%%-*}" # a pending job's range, e.g. 16-16
if [[ -z "${nodelist}" || -z "${nodes}" || "${nodes}" -le 1 ]]; then
  exec "$@"
fi

mapfile -t hosts < <(scontrol show hostnames "${nodelist}")
if [[ "${#hosts[@]}" -ne "${nodes}" ]]; then
  log "the allocation has ${nodes} nodes but its node list ${nodelist} names ${#hosts[@]}"
  exit 1
fi
[[ -n "${SLURM_GPUS_ON_NODE:-}" && -n "${SLURM_CPUS_PER_TASK:-}" ]] || read_job_info
# GPUs per node: from TresPerNode (gres/gpu:8, gres/gpu:h100:8, or gpu:8 on older SLURM); none found: Ray detects them
gpus="${RAY_GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-$(job_field TresPerNode | sed -nE 's/.*gpu(:[^:,]+)?:([0-9]+).*/\2/p')}}"
cpus="${RAY_CPUS_PER_NODE:-${SLURM_CPUS_PER_TASK:-$(job_field CPUs/Task)}}"
port="${RAY_PORT:-6379}"
timeout_s="${RAY_START_TIMEOUT:-600}"
poll_s="${RAY_POLL_S:-5}"

# One task on one node, holding the node's CPUs and GPUs (explicit: the plugin's stripped environment carries no
# --cpus-per-task for srun to inherit).
step=(srun --nodes=1 --ntasks=1)
ray_res=()
if [[ -n "${cpus}" ]]; then
  step+=(--cpus-per-task="${cpus}")
  ray_res+=(--num-cpus="${cpus}")
fi
if [[ -n "${gpus}" && "${gpus}" -gt 0 ]]; then
  step+=(--gres="gpu:${gpus}")
  ray_res+=(--num-gpus="${gpus}")
fi

head="${hosts[0]}"
head_ip="$(srun --nodes=1 --ntasks=1 -w "${head}" hostname --ip-address | awk '{print $1}')"
export RAY_ADDRESS="${head_ip}:${port}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"

pids=()
cleanup() {
  local status=$?
  if [[ "${#pids[@]}" -gt 0 ]]; then
    log "stopping the Ray steps"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  exit "${status}"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# Alive Ray nodes as `ray status` lists them (the Active and Idle sections count one line per node type).
ray_nodes() {
  ray status --address "${RAY_ADDRESS}" 2>/dev/null |
    awk '/^(Active|Idle):/ {on = 1; next} /^[A-Za-z]/ {on = 0} on && $1 ~ /^[0-9]+$/ {n += $1} END {print n + 0}'
}

wait_for() { # wait_for WHAT N: until N nodes are up, or fail after the timeout
  local what="$1" want="$2" waited=0
  until [[ "$(ray_nodes)" -ge "${want}" ]]; do
    for pid in "${pids[@]}"; do
      if ! kill -0 "${pid}" 2>/dev/null; then
        log "a Ray step exited before the cluster was up (waiting for ${what})"
        exit 1
      fi
    done
    if awk -v w="${waited}" -v t="${timeout_s}" 'BEGIN {exit !(w >= t)}'; then
      log "timed out after ${timeout_s}s waiting for ${what} (${RAY_ADDRESS}); see the steps' output above"
      exit 1
    fi
    sleep "${poll_s}"
    waited="$(awk -v w="${waited}" -v p="${poll_s}" 'BEGIN {print w + p}')"
  done
}

log "head ${head} (${RAY_ADDRESS}), ${nodes} nodes, ${gpus:-auto} GPUs and ${cpus:-auto} CPUs per node"
"${step[@]}" -w "${head}" ray start --head --node-ip-address="${head_ip}" --port="${port}" "${ray_res[@]}" --block &
pids+=($!)
wait_for "the Ray head" 1
for h in "${hosts[@]:1}"; do
  "${step[@]}" -w "${h}" ray start --address="${RAY_ADDRESS}" "${ray_res[@]}" --block &
  pids+=($!)
done
wait_for "${nodes} Ray nodes" "${nodes}"
log "Ray cluster up: ${nodes} nodes"

"$@"
