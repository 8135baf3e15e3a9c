"""The ``rlgen`` command: ``rlgen train sac|synther``, ``rlgen finetune calql|cql|iql|td3bc``,
``rlgen synther upsample``, ``rlgen dataset generate``, ``rlgen demo``."""

from __future__ import annotations

import argparse
import sys

from rlgen import config as flags


def _train_sac(args: argparse.Namespace) -> None:
    from rlgen.train.runner import OnlineConfig, OnlineRun, enable_compilation_cache

    enable_compilation_cache()
    config = flags.from_arguments(OnlineConfig, args)
    if args.sweep:
        from rlgen.train import sweep

        sweep.cli(lambda c, grid: OnlineRun(c, sweep=grid), config, args.sweep)
        return
    results = OnlineRun(config).run()
    print(
        f"final evaluation return per seed: "
        f"{[round(r, 1) for r in results['final_eval_return_per_seed']]}"
    )
    print(f"wall time {results['wall_time_s']:.1f} s; run directory {args.run_dir}")


def _train_synther(args: argparse.Namespace) -> None:
    from rlgen.train import synther
    from rlgen.train.runner import enable_compilation_cache

    enable_compilation_cache()
    synther.train_cli(args)


def _synther_upsample(args: argparse.Namespace) -> None:
    from rlgen.train import synther
    from rlgen.train.runner import enable_compilation_cache

    enable_compilation_cache()
    synther.upsample_cli(args)


def _finetune(args: argparse.Namespace) -> None:
    from rlgen.train.finetune import FinetuneConfig, FinetuneRun
    from rlgen.train.runner import enable_compilation_cache

    enable_compilation_cache()
    config = flags.from_arguments(FinetuneConfig, args, algo=args.algo)
    if args.sweep:
        from rlgen.train import sweep

        sweep.cli(lambda c, grid: FinetuneRun(c, sweep=grid), config, args.sweep)
        return
    results = FinetuneRun(config).run()
    offline = [f"{x:.1f}" for x in results["offline_score_per_seed"]]
    final = [f"{x:.1f}" if config.steps else "-" for x in results["final_score_per_seed"]]
    mean_final = f"{results['final_score_mean']:.1f}" if config.steps else "-"
    print(f"\n{config.algo} on {config.env} / {config.dataset} (D4RL-normalised score)")
    print("| seed | after offline | after online |\n|---:|---:|---:|")
    for i, (before, after) in enumerate(zip(offline, final, strict=True)):
        print(f"| {i} | {before} | {after} |")
    print(f"| mean | {results['offline_score_mean']:.1f} | {mean_final} |")
    print(f"wall time {results['wall_time_s']:.1f} s; run directory {config.run_dir}")


SWEEP_HELP = (
    "NAME=V1,V2,... (repeatable): the agent's hyperparameters (learning rates, cql_alpha, "
    "expectile, tau, ...) are vmapped with the seeds in one compiled run; other settings (utd, "
    "hidden as 256x256, batch_size, ...) run one compiled run per value, in run_dir/NAME=V"
)


def add_sweep_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sweep", action="append", default=[], metavar="NAME=V1,V2", help=SWEEP_HELP
    )


def _demo(args: argparse.Namespace) -> None:
    from rlgen import demo
    from rlgen.train.runner import enable_compilation_cache

    enable_compilation_cache()
    demo.run(args.out, args.scale, progress=not args.no_progress)


def _dataset_generate(args: argparse.Namespace) -> None:
    from rlgen.train import generate
    from rlgen.train.runner import enable_compilation_cache

    enable_compilation_cache()
    generate.cli(args)


def _dataset_train_behaviour(args: argparse.Namespace) -> None:
    from rlgen.train import behaviour
    from rlgen.train.runner import enable_compilation_cache

    enable_compilation_cache()
    behaviour.train_cli(args)


FINETUNE_ALGOS = {
    "calql": "Cal-QL: CQL with the policy Q-values bounded below by MC returns",
    "cql": "CQL (Cal-QL without calibration)",
    "iql": "IQL: expectile value, advantage-weighted policy",
    "td3bc": "TD3+BC offline, then TD3 (see --finetune-bc-weight) online",
}


def build_parser() -> argparse.ArgumentParser:
    from rlgen.train import synther
    from rlgen.train.behaviour import BehaviourConfig
    from rlgen.train.finetune import FinetuneConfig
    from rlgen.train.generate import KINDS, GenerateConfig
    from rlgen.train.runner import OnlineConfig

    parser = argparse.ArgumentParser(prog="rlgen", description=__doc__)
    multihost = parser.add_argument_group("several hosts (docs/multihost.md)")
    multihost.add_argument("--coordinator", help="HOST:PORT of process 0 ($RLGEN_COORDINATOR)")
    multihost.add_argument("--num-processes", type=int, help="($RLGEN_NUM_PROCESSES)")
    multihost.add_argument("--process-id", type=int, help="($RLGEN_PROCESS_ID)")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="online training")
    algos = train.add_subparsers(dest="algo", required=True)
    sac = algos.add_parser(
        "sac",
        help="SAC with a critic ensemble over vmapped seeds",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    flags.add_arguments(sac, OnlineConfig)
    add_sweep_argument(sac)
    sac.set_defaults(func=_train_sac)
    online_synther = algos.add_parser(
        "synther",
        help="online SynthER: SAC (UTD 20) on half-synthetic batches from a diffusion model "
        "refit on the replay every --retrain-every env steps",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    synther.add_train_arguments(online_synther)
    add_sweep_argument(online_synther)
    online_synther.set_defaults(func=_train_synther)

    upsampling = commands.add_parser("synther", help="SynthER diffusion upsampling")
    upsampling_commands = upsampling.add_subparsers(dest="synther_command", required=True)
    upsample = upsampling_commands.add_parser(
        "upsample",
        help="fit SynthER's diffusion model on a dataset and write --samples generated "
        "transitions as a D4RL file",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    synther.add_upsample_arguments(upsample)
    upsample.set_defaults(func=_synther_upsample)

    finetune = commands.add_parser("finetune", help="offline pretraining then online fine-tuning")
    finetune_algos = finetune.add_subparsers(dest="algo", required=True)
    for algo, text in FINETUNE_ALGOS.items():
        sub = finetune_algos.add_parser(
            algo, help=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        flags.add_arguments(sub, FinetuneConfig, skip=("algo",))
        add_sweep_argument(sub)
        sub.set_defaults(func=_finetune, run_dir=f"runs/{algo}")

    demo = commands.add_parser("demo", help="the main job on a small default")
    demo.add_argument("--out", default="results/demo", help="output directory")
    demo.add_argument("--scale", default="auto", help="auto, ci, cpu or gpu")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.set_defaults(func=_demo)

    dataset = commands.add_parser("dataset", help="offline datasets")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", required=True)
    gen = dataset_commands.add_parser(
        "generate",
        help="generate a D4RL-style dataset (cached in --data-dir)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    gen.add_argument("--env", default="hopper", help="hopper, halfcheetah, walker2d or ant")
    gen.add_argument("--kind", default="medium", choices=(*KINDS, "all"), help="dataset kind")
    gen.add_argument("--size", type=int, default=1_000_000, help="transitions")
    gen.add_argument("--seed", type=int, default=0, help="seed of the behaviour run and rollouts")
    gen.add_argument("--data-dir", default=None, help="default: $RLGEN_DATA or ~/.cache/rlgen")
    gen.add_argument("--overwrite", action="store_true", help="regenerate cached files")
    flags.add_arguments(gen, GenerateConfig)
    gen.set_defaults(func=_dataset_generate)
    behaviour = dataset_commands.add_parser(
        "train-behaviour",
        help="train (or --resume) the long SAC run whose snapshots become the reference "
        "medium / expert policies",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    flags.add_arguments(behaviour, BehaviourConfig)
    behaviour.set_defaults(func=_dataset_train_behaviour)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from rlgen.train import distributed

    try:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        args.func(args)
    except ValueError as err:  # bad config values: one clear line, not a traceback
        sys.exit(f"rlgen: error: {err}")


if __name__ == "__main__":
    main()
