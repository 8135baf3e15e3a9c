"""Does energy guidance do what EDIS says? A measured effect, not a return curve.

Offline data: uniform-random hopper transitions. Online data and policy: a SAC run's recent
replay and its final policy. One diffusion model is fitted on offline + online data (normaliser
included), the three energies are trained against it as a run trains them (``refits`` rounds of
``energy_steps`` steps, each on fresh online positives and fresh negatives, continuing the same
energies), and transitions are sampled without and with guidance (a few scales, the guidance term
clipped as in runs). For each sample set:

- ``state_mmd``: MMD^2 between generated states and held-out online states (lower: closer to
  the current policy's state distribution);
- ``policy_logp``: mean log-likelihood of the generated actions under the online policy;
- ``dynamics_mse``: median next-state error of one simulator step from each generated row
  (transition consistency, :func:`rlgen.gen.fidelity.dynamics_error`).

    python -m experiments.edis_guidance --scale full   # GPU
    python -m experiments.edis_guidance --scale cpu    # about 7 minutes on 2 shared cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax

from experiments.common import write_report
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
        refits=2,
        energy_steps=25,
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
        refits=3,  # as experiments.edis_calql at cpu scale: 3 refits of 500 steps, 512 rows
        energy_steps=500,
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
        refits=5,
        energy_steps=200,
        examples=5_120,
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


def _data(s: dict, out: Path):
    """Offline buffer, SAC agent / state / actor network, online rows to fit on, held-out rows."""
    path = generate.generate("hopper", "random", s["offline"], data_dir=out / "data")
    offline = replay.from_transitions(datasets.to_transitions(datasets.load(path)[0]))
    agent, agent_state, online, actor = _online_policy(s, out)
    n = int(online.size)
    recent = jax.tree.map(lambda x: x[n // 2 : n], online.data)  # the policy's later data
    held_out = jax.tree.map(lambda x: x[1::2], recent)
    online_fit = replay.from_transitions(jax.tree.map(lambda x: x[::2], recent))
    return offline, (agent, agent_state, actor), online_fit, held_out


def _augment(s: dict) -> generators.DiffusionAugment:
    sampler = edm.SamplerConfig(num_steps=s["sampler_steps"])
    return generators.DiffusionAugment(
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


def fit(s: dict, aug, offline, online_fit, agent, agent_state, key):
    """The diffusion model fitted on offline + online rows, and energies trained as a run trains
    them over ``refits`` rounds. Returns the model, its loss, the energies and per-refit
    accuracies: first step (fresh rows, before training on them) and last step."""
    k_fit, k_init, k_refits = jax.random.split(key, 3)
    sources = (offline, online_fit)
    fit_model = jax.jit(generators.fit_diffusion, static_argnums=0)
    model, loss = fit_model(aug, k_fit, sources, generators.union_normalizer(sources))
    policy = lambda obs, k: agent.act(agent_state, obs, k, False)  # noqa: E731
    refit = jax.jit(lambda e, k: generators.train_energies(aug, e, model, online_fit, policy, k))
    energies, accuracy = generators.init_energies(aug, k_init), []
    for k in jax.random.split(k_refits, s["refits"]):
        energies, metrics = refit(energies, k)
        accuracy.append(
            {m: (float(v[0]), float(v[-1])) for m, v in metrics.items() if "accuracy" in m}
        )
    return model, loss, energies, accuracy


def evaluator(held_out, actor, agent_state):
    """Sample-set metrics: state MMD^2 to held-out online states, policy log-likelihood, median
    one-step dynamics error."""
    mean, std = held_out.obs.mean(0), held_out.obs.std(0) + 1e-6
    z = lambda obs: (obs - mean) / std  # noqa: E731

    def log_likelihood(t):
        mean, log_std = actor.apply(agent_state.actor.params, t.obs)
        return float(nets.tanh_gaussian_log_prob(mean, log_std, t.action).mean())

    def evaluate(t):
        return {
            "state_mmd": float(fidelity.mmd(z(t.obs), z(held_out.obs[: len(t)]))),
            "policy_logp": log_likelihood(t),
            "dynamics_mse": fidelity.dynamics_error("hopper", t)["next_obs_mse_median"],
        }

    return evaluate


def label(scale) -> str:
    """Row name of a guidance scale: one value or a dict by energy."""
    if isinstance(scale, dict):
        return "guided, " + ", ".join(f"{n} {scale[n]:g}" for n in energy.ENERGIES)
    return f"guided, scale {scale:g}"


def measure(scale: str, out: Path) -> dict:
    """Fit, train energies, sample unguided and guided, and compare; writes results.json/md."""
    s = SCALES[scale]
    key = jax.random.key(0)
    offline, (agent, agent_state, actor), online_fit, held_out = _data(s, out)
    aug = _augment(s)
    k_fit, k_sample = jax.random.split(key)
    model, loss, energies, accuracy = fit(s, aug, offline, online_fit, agent, agent_state, k_fit)
    evaluate = evaluator(held_out, actor, agent_state)
    sampler = aug.energy_config.sampler
    rows = {"online (held out)": evaluate(jax.tree.map(lambda x: x[: s["samples"]], held_out))}
    rows["unguided"] = evaluate(diffusion.generate(model, k_sample, s["samples"], sampler=sampler))
    for g in s["scales"]:
        guidance = energy.Guidance.create(g, aug.guidance_clip)
        t = energy.guided_generate(model, energies, k_sample, s["samples"], guidance)
        rows[label(g)] = evaluate(t)
    summary = {
        "scale": scale,
        "system": runinfo.describe(),
        "diffusion_loss": float(loss),
        "energy_accuracy_first_last_step": accuracy,
        "rows": rows,
    }
    lines = [
        "| samples | state MMD^2 to online | policy log-lik. | dynamics MSE (median) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['state_mmd']:.4f} | {r['policy_logp']:.2f} | {r['dynamics_mse']:.3g} |"
        )
    write_report(out, summary, lines)
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
