import os

# The suite runs on the CPU (CI has no GPU).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
