from rlgen.gen import diffusion, edm  # noqa: F401
