"""Light constants shared by the library, the CLI and the app (no heavy imports here: the CLI builds its
parsers from these before torch is loaded)."""

SAMPLERS = ("ddpm", "ddim", "dpm++", "euler", "unipc")
MAX_SEED = 2**63 - 1
MAX_STEPS = 1000
MAX_GUIDANCE = 50.0
MAX_COUNT_PRIOR = 3.0  # studio.count_prior strength (0 = off)
MAX_RELATION_PRIOR = 3.0  # studio.relation_prior strength (0 = off)
PRECISIONS = ("auto", "fp32", "bf16")  # number formats to sample in (studio.precision; auto: bf16 where faster)
ALIGN_WORDINGS = ("caption", "free")  # what `studio eval align` asks in: canonical captions or free-form wordings
SPEEDS = ("fast", "balanced", "best")  # a model's measured sampling presets (`studio eval frontier`)

# The shipped models in the order a default is picked (the CLI's `--model`, the app's first choice): the
# shapes pair has measured prompt alignment; the emoji pair knows 1,756 concepts but draws many roughly.
PREFERRED_MODELS = ("shapes-256", "emoji-256", "shapes-core-64", "emoji-core-64")

EMPTY_PROMPT_NOTE = "Empty prompt: sampling unconditionally (no text condition, so guidance has no effect)."
