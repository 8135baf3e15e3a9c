"""EDIS (Liu et al., ICML 2024) with Cal-QL: Cal-QL vs Cal-QL + EDIS on three generated
datasets, 200k fine-tuning steps, 5 seeds; ablations of each energy on hopper.

    python -m experiments.edis_calql --scale full   # GPU
    python -m experiments.edis_calql --scale cpu    # 2-core CPU, hopper-medium only

The cpu scale runs hopper-medium, whose data the shipped policy makes in seconds;
medium-replay needs the behaviour run's replay buffer (about 25 min to replay on 2 cores).
"""

from experiments.common import CPU, CPU_DIFFUSION, SMOKE, Arm, Protocol, finetune_run, main

TASKS = {
    f"{env}-medium-replay": {"env": env, "dataset": "medium-replay"}
    for env in ("hopper", "halfcheetah", "walker2d")
}
EDIS = {"augment": "edis", "generated_ratio": 0.5}


def protocol(algo: str, label: str) -> Protocol:
    """Base agent vs base + EDIS, with the energy ablations on the first task."""
    ablations = tuple(
        Arm(f"{label} + EDIS w/o {name}", {**EDIS, "energies": tuple(sorted(keep))})
        for name, keep in (
            ("state", {"policy", "transition"}),
            ("policy", {"state", "transition"}),
            ("transition", {"state", "policy"}),
        )
    )
    return Protocol(
        name=f"edis_{algo}",
        claim="EDIS improves the base agent by about 20% on average after fine-tuning",
        tasks=TASKS,
        arms=(Arm(label, {}), Arm(f"{label} + EDIS", EDIS)),
        scales={
            "full": dict(
                algo=algo,
                seeds=5,
                pretrain_steps=1_000_000,
                steps=200_000,
                eval_every=5_000,
                eval_episodes=5,
            ),
            # hopper-medium only: refits after the warm-up and every 2.5k steps
            "cpu": {
                **CPU,
                **CPU_DIFFUSION,
                "algo": algo,
                "refresh_every": 2_500,
                "energy_steps": 500,
                "energy_examples": 512,
            },
            "smoke": {**SMOKE, "algo": algo},
        },
        make_run=finetune_run,
        small_tasks={"hopper-medium": {"env": "hopper", "dataset": "medium"}},
        ablation_task="hopper-medium-replay",
        ablations=ablations,
    )


PROTOCOL = protocol("calql", "Cal-QL")

if __name__ == "__main__":
    main(PROTOCOL)
