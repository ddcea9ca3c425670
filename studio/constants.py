"""Light constants shared by the library, the CLI and the app (no heavy imports here: the CLI builds its
parsers from these before torch is loaded)."""

SAMPLERS = ("ddpm", "ddim", "dpm++", "euler", "unipc")
MAX_SEED = 2**63 - 1
MAX_STEPS = 1000
MAX_GUIDANCE = 50.0
