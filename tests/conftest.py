import os

# Tests run on the CPU; keep XLA from grabbing every core's threads beyond what is there.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
