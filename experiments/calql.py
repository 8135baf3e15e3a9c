"""Cal-QL (Nakamoto et al., NeurIPS 2023): Cal-QL vs CQL, offline pretraining then online
fine-tuning on generated medium-replay datasets, 5 seeds vmapped.

    python -m experiments.calql --scale full    # GPU: 3 tasks x 2 arms, 1M updates + 100k steps
"""

from experiments.common import CPU, SMOKE, Arm, Protocol, finetune_run, main

TASKS = {
    env: {"env": env, "dataset": "medium-replay"} for env in ("hopper", "halfcheetah", "walker2d")
}

PROTOCOL = Protocol(
    name="calql",
    claim=(
        "CQL's score dips early in fine-tuning while Cal-QL's does not, and Cal-QL ends at least "
        "as high"
    ),
    tasks=TASKS,
    arms=(Arm("Cal-QL", {"algo": "calql"}), Arm("CQL", {"algo": "cql"})),
    scales={
        "full": dict(
            seeds=5, pretrain_steps=1_000_000, steps=100_000, eval_every=2_000, eval_episodes=5
        ),
        "cpu": CPU,  # hopper only
        "smoke": SMOKE,
    },
    make_run=finetune_run,
)

if __name__ == "__main__":
    main(PROTOCOL)
