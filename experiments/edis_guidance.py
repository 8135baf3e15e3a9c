"""Does energy guidance do what EDIS says? A measured effect, not a return curve.

Offline data: uniform-random hopper transitions. Online data and policy: a SAC run's recent
replay and its final policy. One diffusion model is fitted on offline + online data, the three
energies are trained against it, and transitions are sampled without and with guidance (a few
scales). For each sample set:

- ``state_mmd``: MMD^2 between generated states and held-out online states (lower: closer to
  the current policy's state distribution);
- ``policy_logp``: mean log-likelihood of the generated actions under the online policy;
- ``dynamics_mse``: median next-state error of one simulator step from each generated row
  (transition consistency, :func:`rlgen.gen.fidelity.dynamics_error`).

    python -m experiments.edis_guidance --scale full   # GPU
    python -m experiments.edis_guidance --scale cpu    # about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

from rlgen import nets, runinfo
from rlgen.agents import sac
from rlgen.data import datasets, replay
from rlgen.gen import diffusion, edm, energy, fidelity
from rlgen.train import generate, generators
from rlgen.train.runner import OnlineConfig, OnlineRun, enable_compilation_cache

SCALES = {
    "smoke": dict(
        offline=2_000,
        sac_steps=1_500,
        hidden=(32, 32),
        width=32,
        diffusion_steps=200,
        energy_steps=50,
        examples=64,
        samples=256,
        sampler_steps=16,
        scales=(1.0,),
    ),
    "cpu": dict(
        offline=20_000,
        sac_steps=8_000,
        hidden=(64, 64),
        width=256,
        diffusion_steps=4_000,
        energy_steps=1_000,
        examples=512,
        samples=2_000,
        sampler_steps=32,
        scales=(0.3, 1.0, 3.0),
    ),
    "full": dict(
        offline=200_000,
        sac_steps=100_000,
        hidden=(256, 256),
        width=1024,
        diffusion_steps=50_000,
        energy_steps=5_000,
        examples=2_048,
        samples=20_000,
        sampler_steps=128,
        scales=(0.3, 1.0, 3.0, 10.0),
    ),
}


def _online_policy(s: dict, out: Path):
    config = OnlineConfig(
        env="hopper",
        backend="mujoco" if jax.default_backend() == "cpu" else "auto",
        steps=s["sac_steps"],
        warmup=min(1_000, s["sac_steps"] // 2),
        hidden=s["hidden"],
        chunk=250,
        eval_every=0,
        eval_episodes=2,
        run_dir=str(out / "sac"),
        progress=False,
    )
    run = OnlineRun(config)
    run.run()
    agent_state = jax.tree.map(lambda x: x[0], run.state.agent)
    buffer = jax.tree.map(lambda x: x[0], run.state.buffer)
    return run.agent, agent_state, buffer, sac.networks(sac.Config(11, 3, s["hidden"]))[0]


def measure(scale: str, out: Path) -> dict:
    """Fit, train energies, sample unguided and guided, and compare; writes results.json."""
    s = SCALES[scale]
    key = jax.random.key(0)
    path = generate.generate("hopper", "random", s["offline"], data_dir=out / "data")
    offline = replay.from_transitions(datasets.to_transitions(datasets.load(path)[0]))
    agent, agent_state, online, actor = _online_policy(s, out)
    n = int(online.size)
    recent = jax.tree.map(lambda x: x[n // 2 : n], online.data)  # the policy's later data
    held_out = jax.tree.map(lambda x: x[1::2], recent)
    online_fit = replay.from_transitions(jax.tree.map(lambda x: x[::2], recent))

    sampler = edm.SamplerConfig(num_steps=s["sampler_steps"])
    aug = generators.DiffusionAugment(
        "edis",
        diffusion.Config.for_transitions(
            11, 3, width=s["width"], num_train_steps=s["diffusion_steps"], sampler=sampler
        ),
        train_steps=s["diffusion_steps"],
        num_samples=s["samples"],
        energy_config=energy.Config(11, 3, sampler=sampler),
        energy_steps=s["energy_steps"],
        energy_examples=s["examples"],
    )
    normalizer = diffusion.fit_normalizer(diffusion.flatten(offline.data))
    k_fit, k_ex, k_energy, k_rows, k_sample = jax.random.split(key, 5)
    model, loss = jax.jit(generators.fit_diffusion, static_argnums=0)(
        aug, k_fit, (offline, online_fit), normalizer
    )
    policy = lambda obs, k: agent.act(agent_state, obs, k, False)  # noqa: E731
    positives = replay.sample(online_fit, k_rows, s["examples"])
    examples = jax.jit(
        lambda k: energy.build_examples(aug.energy_config, model, positives, policy, k)
    )(k_ex)
    energies, metrics = energy.train(
        energy.init(k_energy, aug.energy_config), examples, s["energy_steps"], 256
    )

    def log_likelihood(t):
        mean, log_std = actor.apply(agent_state.actor.params, t.obs)
        return float(nets.tanh_gaussian_log_prob(mean, log_std, t.action).mean())

    mean, std = held_out.obs.mean(0), held_out.obs.std(0) + 1e-6
    z = lambda obs: (obs - mean) / std  # noqa: E731

    def evaluate(t):
        return {
            "state_mmd": float(fidelity.mmd(z(t.obs), z(held_out.obs[: len(t)]))),
            "policy_logp": log_likelihood(t),
            "dynamics_mse": fidelity.dynamics_error("hopper", t)["next_obs_mse_median"],
        }

    rows = {"online (held out)": evaluate(jax.tree.map(lambda x: x[: s["samples"]], held_out))}
    rows["unguided"] = evaluate(diffusion.generate(model, k_sample, s["samples"], sampler=sampler))
    for g in s["scales"]:
        guidance = energy.Guidance.create(g)
        t = energy.guided_generate(model, energies, k_sample, s["samples"], guidance)
        rows[f"guided, scale {g}"] = evaluate(t)
    summary = {
        "scale": scale,
        "system": runinfo.describe(),
        "diffusion_loss": float(loss),
        "energy_accuracy": {k: float(v[-1]) for k, v in metrics.items() if "accuracy" in k},
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    lines = [
        "| samples | state MMD^2 to online | policy log-lik. | dynamics MSE (median) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['state_mmd']:.4f} | {r['policy_logp']:.2f} | {r['dynamics_mse']:.3g} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="experiments.edis_guidance", description=__doc__)
    parser.add_argument("--scale", default="full", choices=tuple(SCALES))
    parser.add_argument("--out", default="results/experiments/edis_guidance")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    return measure(args.scale, Path(args.out))


if __name__ == "__main__":
    main()
