"""SynthER offline (Lu et al., NeurIPS 2023): an offline agent trained on real data, on real +
SynthER-upsampled data, and on synthetic data only, on two generated datasets, 5 seeds.

    python -m experiments.synther_offline --scale full   # GPU
    python -m experiments.synther_offline --scale cpu    # 2-core CPU, hopper only
"""

from experiments.common import CPU, CPU_DIFFUSION, SMOKE, Arm, Protocol, finetune_run, main

TASKS = {
    f"{env}-medium-replay": {"env": env, "dataset": "medium-replay"}
    for env in ("hopper", "walker2d")
}
SYNTHER = {"augment": "synther"}

PROTOCOL = Protocol(
    name="synther_offline",
    claim=(
        "agents trained on SynthER's upsampled data match or beat those trained on the real "
        "data, and synthetic-only data comes close to real"
    ),
    tasks=TASKS,
    arms=(
        Arm("real", {}),
        Arm("real + SynthER", {**SYNTHER, "synthetic_ratio": 0.5}),
        Arm("SynthER only", {**SYNTHER, "synthetic_ratio": 1.0}),
    ),
    scales={
        "full": dict(
            algo="td3bc",
            seeds=5,
            pretrain_steps=1_000_000,
            steps=0,
            pretrain_eval_every=50_000,
            diffusion_width=2048,  # SynthER's offline denoiser
            num_generated=5_000_000,
        ),
        "cpu": {  # hopper only
            **CPU,
            **CPU_DIFFUSION,
            "algo": "td3bc",
            "seeds": 3,
            "pretrain_steps": 5_000,
            "steps": 0,
            "num_generated": 30_000,
        },
        "smoke": {**SMOKE, "algo": "td3bc", "steps": 0},
    },
    make_run=finetune_run,
)

if __name__ == "__main__":
    main(PROTOCOL)
