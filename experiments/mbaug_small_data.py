"""Model-based augmentation for small datasets ("Small Dataset, Big Gains"): 10k transitions
subsampled from generated datasets; TD3+BC pretraining without / with world-model augmentation
(next-state replacement, MOPO rollouts), then TD3 online, against TD3 from scratch; reports the
score right after pretraining and the env steps to reach a score threshold.

    python -m experiments.mbaug_small_data --scale full   # GPU
    python -m experiments.mbaug_small_data --scale cpu    # 2-core CPU, hopper only
"""

from experiments.common import CPU, SMOKE, Arm, Protocol, finetune_run, main

TASKS = {
    f"{env}-medium": {"env": env, "dataset": "medium", "dataset_size": 10_000}
    for env in ("hopper", "walker2d")
}

PROTOCOL = Protocol(
    name="mbaug_small_data",
    claim=(
        "augmented pretraining jump-starts online fine-tuning, needing up to 10x fewer "
        "interactions to reach a given return"
    ),
    tasks=TASKS,
    arms=(
        Arm("TD3 from scratch", {"pretrain_steps": 0, "offline_ratio": 0.0}),
        Arm("TD3+BC pretrain", {}),
        Arm("TD3+BC + model next states", {"augment": "model"}),
        Arm("TD3+BC + model rollouts", {"augment": "model-rollouts"}),
    ),
    scales={
        "full": dict(
            algo="td3bc",
            seeds=5,
            pretrain_steps=100_000,
            steps=100_000,
            eval_every=5_000,
            eval_episodes=5,
        ),
        # hopper only; a 100k-row medium dataset subsampled to 10k
        "cpu": {**CPU, "algo": "td3bc", "pretrain_steps": 5_000, "steps": 10_000},
        "smoke": {**SMOKE, "algo": "td3bc"},
    },
    make_run=finetune_run,
    thresholds={"full": 40.0, "cpu": 10.0},
)

if __name__ == "__main__":
    main(PROTOCOL)
