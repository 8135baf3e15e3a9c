"""EDIS with IQL: IQL vs IQL + EDIS on three generated datasets, 200k fine-tuning steps,
5 seeds; energy ablations on hopper.

    python -m experiments.edis_iql --scale full   # GPU
    python -m experiments.edis_iql --scale cpu    # 2-core CPU, hopper-medium only
"""

from experiments.common import main
from experiments.edis_calql import protocol

PROTOCOL = protocol("iql", "IQL")

if __name__ == "__main__":
    main(PROTOCOL)
