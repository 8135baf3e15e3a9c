"""SynthER online (Lu et al., NeurIPS 2023): SAC at UTD 1 vs SAC at UTD 20 vs SynthER at UTD 20
(half-real, half-synthetic batches; the generator refitted every 10k env steps on the whole
replay) on hopper, 100k env steps, 5 seeds.

    python -m experiments.synther_online --scale full   # GPU
    python -m experiments.synther_online --scale cpu    # the largest that fits a 2-core CPU
"""

from experiments.common import Arm, Protocol, main

SYNTHER = {"synther": True}

# settings only SynthER's generator has (dropped for the plain SAC arms)
GENERATOR_FIELDS = (
    "retrain_every",
    "diffusion_steps",
    "diffusion_width",
    "diffusion_batch",
    "num_synthetic",
    "sampler_steps",
)


def online_config(overrides: dict):
    """An online SAC config, or a SynthER one when ``overrides["synther"]``."""
    from rlgen.train.runner import OnlineConfig
    from rlgen.train.synther import SyntherConfig

    overrides = dict(overrides)
    if overrides.pop("synther", False):
        return SyntherConfig(**overrides)
    return OnlineConfig(**{k: v for k, v in overrides.items() if k not in GENERATOR_FIELDS})


def online_run(config, sweep: dict | None = None):
    """An online SAC run of ``config``, or a SynthER run for a SynthER config."""
    from rlgen.train.runner import OnlineRun
    from rlgen.train.synther import SyntherConfig, SyntherRun

    run = SyntherRun if isinstance(config, SyntherConfig) else OnlineRun
    return run(config, sweep=sweep)


PROTOCOL = Protocol(
    name="synther_online",
    claim="SynthER at UTD 20 beats SAC at UTD 1 and SAC at UTD 20",
    tasks={"hopper": {"env": "hopper"}},
    arms=(
        Arm("SAC", {}, sweep={"utd": (1, 20)}),  # one compiled run per UTD
        Arm("SynthER UTD 20", {**SYNTHER, "utd": 20}),
    ),
    scales={
        # SynthER's online settings: denoiser width 1024, 100k diffusion steps and 1M synthetic
        # transitions per refit (the SyntherConfig defaults)
        "full": dict(seeds=5, steps=100_000, eval_every=5_000, eval_episodes=10),
        "cpu": dict(
            seeds=3,
            steps=12_000,
            warmup=2_000,
            chunk=500,
            eval_every=1_000,
            eval_episodes=5,
            hidden=(128, 128),
            batch_size=128,
            retrain_every=5_000,
            diffusion_width=256,
            diffusion_steps=3_000,
            num_synthetic=20_000,
            sampler_steps=32,
            progress=False,
        ),
        "smoke": dict(
            seeds=2,
            steps=600,
            warmup=200,
            chunk=100,
            eval_every=200,
            eval_episodes=1,
            hidden=(16, 16),
            batch_size=32,
            buffer_size=2_000,
            backend="mujoco",
            retrain_every=200,
            diffusion_width=16,
            diffusion_steps=20,
            diffusion_batch=32,
            num_synthetic=128,
            sampler_steps=16,
            progress=False,
        ),
    },
    make_run=online_run,
    make_config=online_config,
)

if __name__ == "__main__":
    main(PROTOCOL)
