#!/usr/bin/python3
"""The Stable-Baselines3 peer of `agent rl-bench`: trains SB3's DQN on
CartPole-v1 or SAC on Pendulum-v1 with the same settings as ours, held to one
CPU and one torch thread, and prints one JSON line with steps and seconds.

Needs Debian's python3-torch, an optimised BLAS behind it (libopenblas0-pthread)
and `pip install --no-deps stable-baselines3 gymnasium farama-notifications
cloudpickle` (see the README)."""
import json
import os
import sys
import time


def main():
    task, steps, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    import torch

    torch.set_num_threads(1)
    import gymnasium as gym
    from stable_baselines3 import DQN, SAC

    if task == "cartpole":
        env = gym.make("CartPole-v1")
        # RL Baselines3 Zoo's tuned CartPole settings, which ours use too.
        model = DQN(
            "MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
            learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
            gradient_steps=128, exploration_fraction=16_000 / max(steps, 1),
            exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]),
            seed=seed, device="cpu", verbose=0,
        )
    elif task == "pendulum":
        env = gym.make("Pendulum-v1")
        model = SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed, device="cpu", verbose=0)
    else:
        sys.exit(f"unknown task {task!r}; use cartpole or pendulum")
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - t0
    print(json.dumps({"task": task, "steps": steps, "seconds": seconds,
                      "torch": torch.__version__, "cpu": cpu, "blas": blas_loaded()}))


def blas_loaded():
    """The BLAS libraries this process has loaded (';'-separated paths). Debian's
    torch uses whatever libblas.so.3 the system's alternatives point at; the
    reference BLAS there is many times slower than OpenBLAS, which would make
    the peer's figure meaningless."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if line.count(" ") >= 5}
    except OSError:
        return ""
    return ";".join(sorted(p for p in paths if "blas" in p.rsplit("/", 1)[-1].lower()))


if __name__ == "__main__":
    main()
