"""The Gradio studio through gradio_client: the app runs in-process on a free port with two tiny models
(a 16 px core and a 32 px model grown from it)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402

from studio.errors import StudioError  # noqa: E402
from studio.images import read_png_info  # noqa: E402
from studio.text import PromptTruncatedWarning  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `ui/` sits next to `studio/` (not installed as a package)
    sys.path.insert(0, str(REPO))
PROMPT = "a red star to the left of a blue circle on a white background"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_models(root: Path) -> Path:
    """tiny-core (16 px, phase core, with a log.jsonl) and tiny-grown (32 px, grown from it)."""
    from studio.caption_match import write_captions
    from studio.growth import core_fingerprint, grow, growth_report, report_as_dicts
    from studio.models import GROWN_PRESETS, ShallowUViT, core_preset

    torch.manual_seed(0)
    core = ShallowUViT(**core_preset("tiny-core"))
    core.register_to_config(training_phase="core")
    core.save_pretrained(root / "tiny-core")
    (root / "tiny-core" / "training.json").write_text(json.dumps(
        {"phase": "core", "steps": 30, "images_seen": 960, "wall_time_s": 90.0,
         "hardware": {"device": "cpu", "torch_threads": 2},
         "final_metrics": {"loss": 0.21, "prompts": 8, "alignment": {"color": 0.5, "position": 0.25}},
         "parameters": report_as_dicts(growth_report(core))}))
    Image.new("RGB", (32, 16), (200, 30, 30)).save(root / "tiny-core" / "samples.png")
    write_captions(root / "tiny-core", [{"text": "hot beverage, 3d style", "name": "hot beverage"},
                                        {"text": "red apple, 3d style", "name": "red apple"}])
    with open(root / "tiny-core" / "log.jsonl", "w") as f:
        for step in range(1, 31):
            f.write(json.dumps({"event": "train", "step": step, "loss": 1.0 / step}) + "\n")
        for step, right in ((15, 2), (30, 3)):  # as the trainer logs it: accuracies, counts, bookkeeping
            f.write(json.dumps({"event": "validation", "step": step, "prompts": 8, "grid": "validation/x.png",
                                "alignment": {"color": right / 4, "position": 0.25},
                                "alignment_counts": {"color": [right, 4], "position": [1, 4]}}) + "\n")
    recipe = GROWN_PRESETS["tiny-grown"]
    grown = grow(core, resolution=recipe["resolution"], stage_channels=recipe["stage_channels"])
    grown.register_to_config(training_phase="grow")
    grown.save_pretrained(root / "tiny-grown")
    (root / "tiny-grown" / "training.json").write_text(json.dumps(
        {"phase": "grow", "parent": {"name": "tiny-core"}, "core_fingerprint": core_fingerprint(grown),
         "data": {"source": "shapes"}}))
    presets = {name: dict(sampler=sampler, steps=steps, guidance=3.0, guidance_interval=interval,
                          seconds_per_image=s, keeps_prompt=True, label=f"{sampler} {steps} steps")
               for name, sampler, steps, interval, s in (("fast", "unipc", 4, None, 0.1),
                                                         ("balanced", "dpm++", 6, [-4.0, 2.0], 0.2),
                                                         ("best", "dpm++", 25, None, 0.5))}
    presets["best"]["count_prior"] = 1.0  # measured with the count prior (`studio eval frontier ...@count_prior=1`)
    presets["best"]["relation_prior"] = 0.5  # ... and the relation prior
    (root / "tiny-grown" / "sampling_presets.json").write_text(json.dumps({"source": "test", "presets": presets}))
    return root


@contextmanager
def running_app(models_dir: Path, outputs: Path, **config):
    """Build and launch the app in this process on a free port; yields its URL."""
    old = os.environ.get("STUDIO_MODELS")
    os.environ["STUDIO_MODELS"] = str(models_dir)
    from studio_ui.app import AppConfig, build_app, launch

    demo = build_app(AppConfig(outputs_dir=outputs, **config))
    try:
        _, url, _ = launch(demo, port=free_port(), prevent_thread_lock=True, quiet=True)
        yield url
    finally:
        demo.close()
        if old is None:
            os.environ.pop("STUDIO_MODELS", None)
        else:
            os.environ["STUDIO_MODELS"] = old


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    # every preview pushed: the tiny models sample a whole run within the app's default interval
    with running_app(make_models(root / "models"), root / "outputs", preview_interval_s=0.0) as url:
        yield url


@pytest.fixture
def client(app_url) -> Client:
    return Client(app_url, verbose=False)  # a new browser session per test


def generate(client: Client, prompt=PROMPT, model="tiny-grown", steps=6, seed=7, images=1, every=1,
             guidance=3.0, sampler="dpm++", interval=None, negative=None, count_prior=None, relation_prior=None,
             match_captions=None):
    extra = () if interval is None else (True, *interval)  # API clients may leave the interval out
    later = (negative, count_prior, relation_prior, match_captions)  # ... and what follows it
    if any(v is not None for v in later):
        extra = (extra or (False, -6.0, 3.0)) + (negative or "",)
    if any(v is not None for v in later[1:]):
        extra += (count_prior or 0.0,)
    if any(v is not None for v in later[2:]):
        extra += (relation_prior or 0.0,)
    if match_captions is not None:
        extra += (match_captions,)
    job = client.submit(model, prompt, sampler, steps, guidance, seed, images, every, *extra, api_name="/generate")
    job.result(timeout=120)
    return job.outputs()


# indices of /generate's outputs (see studio_ui.generate.build; the replay Column is a layout, not an API output)
SEED_USED, STATUS, LIVE_XT, LIVE_X0, RESULTS, HISTORY, REPLAY_SLIDER = 0, 1, 2, 3, 4, 5, 6
GIF = 13


def final_outputs(outputs):
    return next(o for o in reversed(outputs) if isinstance(o[RESULTS], list) and o[RESULTS])


def history_of(outputs) -> list:
    """The history gallery as the run left it (it follows the finished picture in an update of its own)."""
    return next(o[HISTORY] for o in reversed(outputs) if isinstance(o[HISTORY], list))


def test_generate_streams_previews_and_a_final_png(client):
    outputs = generate(client, steps=6, images=2)
    previews = [o for o in outputs if isinstance(o[LIVE_X0], str)]
    assert len(previews) >= 2  # streamed while sampling, not only at the end
    # the last step's preview is never sent: the finished images (the same prediction) follow at once
    assert not any("step 6/6" in o[STATUS] for o in outputs)
    final = final_outputs(outputs)
    assert "Done: 6 steps" in final[STATUS]
    total, per_image = re.search(r"in ([\d.]+) s \(([\d.]+) s per image\)", final[STATUS]).groups()
    assert abs(float(per_image) - float(total) / 2) <= 0.051  # two images: the time per image is half
    paths = [item["image"] for item in final[RESULTS]]
    assert len(paths) == 2
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            assert im.size == (32, 32) and im.format == "PNG"
        info = read_png_info(path)  # the settings travel inside the file
        assert info["prompt"] == PROMPT and info["seed"] == 7 + i and info["model"] == "tiny-grown"
        assert info["sampler"] == "dpm++" and info["steps"] == 6 and info["guidance"] == 3.0
        assert len(info["model_hash"]) == 16
    assert outputs[0][SEED_USED] == "7"
    gif = [o[GIF] for o in outputs if isinstance(o[GIF], dict) and o[GIF].get("value")]
    assert gif and Path(gif[-1]["value"]).suffix == ".gif"


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_same_seed_same_image(client):
    a = final_outputs(generate(client, seed=11, steps=4))[RESULTS][0]["image"]
    b = final_outputs(generate(client, seed=11, steps=4))[RESULTS][0]["image"]
    c = final_outputs(generate(client, seed=12, steps=4))[RESULTS][0]["image"]
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_replay_every_step_and_save_a_frame(client):
    with pytest.raises(Exception, match="Nothing to replay"):
        client.predict(1, api_name="/replay")
    generate(client, steps=5, every=2)
    xt, x0, label, plot, frame_x0, frame_xt = client.predict(2, api_name="/replay")
    assert "step 2/5" in label
    assert pixels(xt).shape == pixels(x0).shape == (32, 32, 3)
    assert plot["type"] == "plotly" and "guidance applied" in plot["plot"]
    info = read_png_info(frame_x0["value"] if isinstance(frame_x0, dict) else frame_x0)
    assert info["step"] == 1 and info["prompt"] == PROMPT


def test_stop_keeps_the_latest_prediction(client, monkeypatch):
    import studio.sampling

    real = studio.sampling.stream

    def slow_stream(*args, **kwargs):  # the app runs in this process: make sure the run outlasts the request
        for record in real(*args, **kwargs):
            time.sleep(0.05)
            yield record

    monkeypatch.setattr(studio.sampling, "stream", slow_stream)
    job = client.submit("tiny-grown", PROMPT, "dpm++", 100, 3.0, 3, 1, 1, api_name="/generate")
    deadline = time.time() + 60
    while time.time() < deadline and not any(isinstance(o[LIVE_X0], str) for o in job.outputs()):
        time.sleep(0.05)
    assert "Stopping" in client.predict(api_name="/stop")
    job.result(timeout=60)
    final = final_outputs(job.outputs())
    assert "Stopped after step" in final[STATUS]
    info = read_png_info(final[RESULTS][0]["image"])
    assert 1 <= info["stopped_after_step"] < 100


def test_rejected_inputs_say_why(client):
    with pytest.raises(Exception, match="seed must be between"):
        generate(client, seed=2**63)
    with pytest.raises(Exception, match="steps|maximum|100"):
        generate(client, steps=500)
    with pytest.raises(Exception):
        generate(client, model="../../etc/passwd")  # only listed names are accepted
    outputs = generate(client, prompt="", steps=2)
    assert "unconditionally" in outputs[0][STATUS]
    long = " ".join(["star"] * 400)
    with pytest.warns(PromptTruncatedWarning):  # the library warns; the app turns it into a status line
        outputs = generate(client, prompt=long, steps=2)
    assert "truncated" in outputs[0][STATUS]


def test_random_seed_is_reported(client):
    outputs = generate(client, seed=-1, steps=2)
    used = int(outputs[0][SEED_USED])
    assert read_png_info(final_outputs(outputs)[RESULTS][0]["image"])["seed"] == used


def test_sessions_do_not_share_history(app_url):
    one, two = Client(app_url, verbose=False), Client(app_url, verbose=False)
    assert len(history_of(generate(one, steps=2))) == 1
    assert len(history_of(generate(one, steps=2, seed=99))) == 2
    assert len(history_of(generate(two, steps=2))) == 1  # two never sees one's images
    with pytest.raises(Exception, match="Nothing to replay"):
        Client(app_url, verbose=False).predict(1, api_name="/replay")  # a reload is a fresh session


def test_core_vs_grown(client):
    gallery, text = client.predict(True, api_name="/core_vs_grown")
    assert not gallery and "Generate an image" in text
    generate(client, model="tiny-core", steps=3, seed=5)
    gallery, text = client.predict(True, api_name="/core_vs_grown")
    assert len(gallery) == 2
    assert "16 px" in gallery[0]["caption"] and "32 px" in gallery[1]["caption"]
    assert pixels(gallery[0]["image"]).shape == pixels(gallery[1]["image"]).shape == (32, 32, 3)
    assert "tiny-core" in text and "tiny-grown" in text


def test_core_vs_grown_without_a_pair(client, tmp_path):
    generate(client, model="tiny-core", steps=2)
    import studio.previews.compare
    from studio.errors import ModelNotFoundError

    real = studio.previews.compare.find_core_and_grown  # where core_vs_grown looks it up
    try:  # as if nothing had been grown from tiny-core yet
        def no_pair(name, load=None):
            raise ModelNotFoundError(f"no grown model was grown from {name!r}")

        studio.previews.compare.find_core_and_grown = no_pair
        gallery, text = client.predict(True, api_name="/core_vs_grown")
    finally:
        studio.previews.compare.find_core_and_grown = real
    assert not gallery and "not available" in text and "no grown model" in text


def test_speed_presets_set_the_sampler_and_steps(client):
    # (sampler, steps, guidance, guidance interval on, from, to, count prior, relation prior); without an interval
    # the boxes keep the usual one, without a prior its slider goes to 0
    assert client.predict("tiny-grown", "fast", api_name="/speed") == ("unipc", 4, 3.0, False, -6.0, 3.0, 0, 0)
    assert client.predict("tiny-grown", "balanced", api_name="/speed") == ("dpm++", 6, 3.0, True, -4.0, 2.0, 0, 0)
    assert client.predict("tiny-grown", "best", api_name="/speed") == ("dpm++", 25, 3.0, False, -6.0, 3.0, 1, 0.5)
    # a model without presets (picking it runs the same function) gets `studio sample`'s settings for it, not the
    # previous model's preset
    assert client.predict("tiny-core", "balanced", api_name="/speed") == ("dpm++", 25, 3.0, False, -6.0, 3.0, 0, 0)


def test_guidance_interval_guides_only_inside_it(client):
    outputs = generate(client, steps=8, interval=(-4.0, 2.0))
    final = final_outputs(outputs)
    assert read_png_info(final[RESULTS][0]["image"])["guidance_interval"] == [-4.0, 2.0]
    labels = [client.predict(step, api_name="/replay")[2] for step in range(1, 9)]
    for label in labels:  # "step i/8 · logSNR +x.xx · guidance applied" or "no guidance"
        logsnr = float(re.search(r"logSNR ([+-][\d.]+)", label).group(1))
        assert ("guidance applied" in label) == (-4.0 <= logsnr <= 2.0), label
    assert any("no guidance" in label for label in labels) and any("applied" in label for label in labels)
    with pytest.raises(Exception, match="guidance interval"):
        generate(client, interval=(3.0, -6.0))


def test_negative_prompt_is_sampled_and_saved_with_the_image(client):
    negative = "a red star to the right of a blue circle on a white background"
    final = final_outputs(generate(client, steps=4, negative=f"  {negative} "))
    assert read_png_info(final[RESULTS][0]["image"])["negative_prompt"] == negative
    plain = final_outputs(generate(client, steps=4))
    assert read_png_info(plain[RESULTS][0]["image"])["negative_prompt"] == ""


def test_count_prior_is_sampled_and_saved_with_the_image(client):
    final = final_outputs(generate(client, prompt="two red stars on a white background", steps=4, count_prior=1.0))
    assert read_png_info(final[RESULTS][0]["image"])["count_prior"] == 1.0
    # 0 turns it off (an API call that leaves it out gets the page's default: the first model's balanced preset)
    off = final_outputs(generate(client, prompt="two red stars on a white background", steps=4, count_prior=0.0))
    assert read_png_info(off[RESULTS][0]["image"])["count_prior"] == 0.0
    with pytest.raises(Exception, match="greater than maximum value 3"):  # the slider's own check
        generate(client, steps=4, count_prior=7.0)


def test_relation_prior_is_sampled_and_saved_with_the_image(client):
    prompt = "a red star to the left of a blue circle on a white background"
    final = final_outputs(generate(client, prompt=prompt, steps=4, relation_prior=0.5))
    assert read_png_info(final[RESULTS][0]["image"])["relation_prior"] == 0.5
    off = final_outputs(generate(client, prompt=prompt, steps=4, relation_prior=0.0))
    assert read_png_info(off[RESULTS][0]["image"])["relation_prior"] == 0.0
    with pytest.raises(Exception, match="greater than maximum value 3"):
        generate(client, steps=4, relation_prior=7.0)


def test_a_model_that_ships_its_captions_draws_the_nearest_one_and_says_so(client):
    outputs = generate(client, prompt="a cup of hot coffee", model="tiny-core", steps=3, match_captions=True)
    final = final_outputs(outputs)
    info = read_png_info(final[RESULTS][0]["image"])
    assert info["prompt"] == "a cup of hot coffee" and info["drawn_as"] == "hot beverage, 3d style"
    assert "nearest trained caption 'hot beverage, 3d style'" in final[STATUS]
    assert "drawn as 'hot beverage, 3d style'" in history_of(outputs)[0]["caption"]
    off = final_outputs(generate(client, prompt="a cup of hot coffee", model="tiny-core", steps=3,
                                 match_captions=False))
    assert "drawn_as" not in read_png_info(off[RESULTS][0]["image"]) and "nearest" not in off[STATUS]


def test_a_shapes_model_reads_the_prompt_as_a_scene_and_says_so(client):
    outputs = generate(client, prompt="big red circle, top-left, on white", model="tiny-grown", steps=3,
                       match_captions=True)
    final = final_outputs(outputs)
    caption = "a large red circle in the top left corner on a white background"
    assert read_png_info(final[RESULTS][0]["image"])["drawn_as"] == caption
    assert f"Read as the scene '{caption}'" in final[STATUS]
    kept = final_outputs(generate(client, prompt=PROMPT, model="tiny-grown", steps=3, match_captions=True))
    assert read_png_info(kept[RESULTS][0]["image"])["drawn_as"] == PROMPT and "Read as" not in kept[STATUS]


def test_the_prompt_box_says_what_matching_makes_of_the_prompt(tmp_path, monkeypatch):
    from ui.models import prompt_reading

    monkeypatch.setenv("STUDIO_MODELS", str(make_models(tmp_path / "models")))
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    assert prompt_reading("tiny-grown", "3 purple dots", True) == \
        "Read as the scene 'three purple circles on a white background' (filled in background white)."
    assert "(no colour of the palette" in prompt_reading("tiny-grown", "a pink star", True)
    assert prompt_reading("tiny-grown", PROMPT, True) == ""  # a caption: drawn as written, nothing to say
    assert prompt_reading("tiny-grown", "3 purple dots", False) == ""  # matching off
    assert "nearest trained caption 'hot beverage, 3d style'" in prompt_reading("tiny-core", "a cup of hot coffee",
                                                                                True)
    assert prompt_reading(None, "3 purple dots", True) == prompt_reading("tiny-grown", " ", True) == ""


def test_the_count_prior_is_a_setting_of_every_run():
    from studio_ui.generate import parse_request

    # on by the presets, so a prompt without a count is no reason for a note: it simply changes nothing there
    settings, notes = parse_request("m", "a red star", "dpm++", 4, 3.0, 0, 1, 50, count_prior=1.0)
    assert settings.count_prior == 1.0 and not notes
    assert parse_request("m", "a red star", "dpm++", 4, 3.0, 0, 1, 50)[0].count_prior == 0.0
    with pytest.raises(StudioError, match="between 0"):
        parse_request("m", "two red stars", "dpm++", 4, 3.0, 0, 1, 50, count_prior=5.0)
    assert parse_request("m", "a red star", "dpm++", 4, 3.0, 0, 1, 50, relation_prior=0.5)[0].relation_prior == 0.5
    with pytest.raises(StudioError, match="relation prior strength must be between 0"):
        parse_request("m", "a red star", "dpm++", 4, 3.0, 0, 1, 50, relation_prior=5.0)


def test_opposite_relation_button_fills_the_negative_prompt():
    from studio_ui.generate import opposite_negative

    turned = "a red star to the right of a blue circle"
    assert opposite_negative("a red star to the left of a blue circle", "") == turned
    assert opposite_negative("a green square above a red star", "old") == "a green square below a red star"
    assert opposite_negative("a red star on a white background", "kept") == "kept"  # nothing to turn around
    assert opposite_negative(None, None) == ""


def test_opposite_relation_button_turns_the_prompt_as_it_will_be_drawn(tmp_path, monkeypatch):
    from studio_ui.generate import opposite_negative

    monkeypatch.setenv("STUDIO_MODELS", str(make_models(tmp_path / "models")))
    free = "red circle under a blue square, on black"
    assert opposite_negative(free, "kept") == "kept"  # as written: no relation phrase of the grammar
    assert opposite_negative(free, "", "tiny-grown", True) == "a red circle above a blue square on a black background"


def test_lineage_names_a_retrained_parent_as_an_earlier_version(tmp_path, monkeypatch):
    """A grown model keeps the record of the core it grew from; once that core's folder holds retrained weights,
    the lineage must not show the new core's training as the grown model's."""
    from studio.hub import weights_hash
    from ui.model_tab import lineage_rows, parent_is_current

    folder = make_models(tmp_path) / "tiny-core"
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path))
    record = {"phase": "grow", "parent": {"name": "tiny-core", "weights_hash": weights_hash(folder)}}
    assert [row[0] for row in lineage_rows({"name": "tiny-grown", "training": record})] == ["tiny-core", "tiny-grown"]
    record["parent"]["weights_hash"] = "0" * 16  # tiny-core was retrained after tiny-grown grew from it
    rows = lineage_rows({"name": "tiny-grown", "training": record})
    assert [row[:3] for row in rows] == [["tiny-core (an earlier version; retrained since)", "?", "?"],
                                        ["tiny-grown", "grow", "?"]]
    current = {"name": "tiny-core", "weights_hash": weights_hash(folder)}
    assert parent_is_current(current, folder, {}) and parent_is_current({"name": "tiny-core"}, folder, {})
    retrained = {"name": "tiny-core", "weights_hash": "0" * 16, "core_fingerprint": "abc"}
    assert not parent_is_current(retrained, folder, {"core_fingerprint": "def"})
    assert parent_is_current(retrained, folder, {"core_fingerprint": "abc"})  # shipped in fp16 after the grow


def test_lineage_shows_each_leg_of_a_core_trained_in_legs(tmp_path, monkeypatch):
    """A core that went on training from its own earlier version (another session, a GPU) lists every leg;
    the earlier version it names as parent is one of those legs, not a separate unknown model."""
    from ui.model_tab import lineage_rows

    root = make_models(tmp_path)
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path))
    core_json = root / "tiny-core" / "training.json"
    record = json.loads(core_json.read_text())
    record.update(parent={"name": "tiny-core", "training_phase": "core", "weights_hash": "0" * 16},
                  images_seen=640, wall_time_s=30.0, hardware={"device": "cuda", "gpu": "NVIDIA H200"},
                  legs=[{"images_seen": 960, "wall_time_s": 90.0, "device": "cpu"},
                        {"images_seen": 640, "wall_time_s": 30.0, "device": "cuda"}])
    core_json.write_text(json.dumps(record))
    assert lineage_rows({"name": "tiny-core", "training": record}) == [
        ["tiny-core (leg 1 of 2)", "core", "960", "1.5 min", "cpu"],
        ["tiny-core (leg 2 of 2)", "core", "640", "0.5 min", "NVIDIA H200"]]
    grown = {"phase": "grow", "images_seen": 32, "parent": {"name": "tiny-core", "training_phase": "core"}}
    assert [row[:3] for row in lineage_rows({"name": "tiny-grown", "training": grown})] == [
        ["tiny-core (leg 1 of 2)", "core", "960"], ["tiny-core (leg 2 of 2)", "core", "640"],
        ["tiny-grown", "grow", "32"]]


def test_model_card(client):
    summary, parts, curve, metrics, samples, lineage, readme = client.predict("tiny-grown", api_name="/model_card")
    assert "GrownUViT" in summary and "32 px" in summary and "tiny-core" in summary
    assert "Speed presets: fast = unipc 4 steps (0.1 s per image); balanced = dpm++ 6 steps (0.2 s" in summary
    assert "caption matching" not in summary.lower()
    states = {row[0]: row[4] for row in parts["data"]}
    assert states["core"] == "frozen" and states["stem"] == "trained"
    assert [row[:3] for row in lineage["data"]] == [["tiny-core", "core", "960"], ["tiny-grown", "grow", "?"]]
    assert lineage["data"][0][3:] == ["1.5 min", "2 CPU threads"]
    summary, parts, curve, metrics, samples, lineage, readme = client.predict("tiny-core", api_name="/model_card")
    assert "Caption matching: 2 trained captions (captions.json)" in summary and "Speed presets" not in summary
    figure = json.loads(curve["plot"])
    names = [trace.get("name") for trace in figure["data"]]
    assert names == ["training loss", "color", "position"]  # alignment per question; no "prompts" line
    color = figure["data"][1]
    assert color["y"] == [0.5, 0.75] and color["error_y"]["array"]  # with its 95% interval
    assert ["final training loss", "0.21", "", ""] in metrics["data"]
    assert ["alignment: color (validation)", "0.50", "", "8"] in metrics["data"]
    assert not any("{" in str(cell) for row in metrics["data"] for cell in row)  # no raw JSON on screen
    assert samples is not None


# --------------------------------------------------------------------------------------------- CLI

def test_cli_options():
    from studio.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["app"])
    assert (args.host, args.port, args.concurrency) == ("127.0.0.1", 7860, 1)
    with pytest.raises(SystemExit):
        parser.parse_args(["app", "--share"])  # never offered


def test_cli_auth_and_models_dir(tmp_path, monkeypatch):
    from studio.cli import CLIError
    from studio.cli.app import add_models_dirs, auth_from_env

    monkeypatch.delenv("STUDIO_APP_PASSWORD", raising=False)
    assert auth_from_env() is None
    monkeypatch.setenv("STUDIO_APP_PASSWORD", "s3cret")
    assert auth_from_env() == ("studio", "s3cret")
    monkeypatch.setenv("STUDIO_MODELS", "")
    add_models_dirs([tmp_path])
    assert os.environ["STUDIO_MODELS"] == str(tmp_path.resolve())
    with pytest.raises(CLIError, match="not a folder"):
        add_models_dirs([tmp_path / "missing"])


@pytest.mark.slow  # a fresh interpreter imports torch, diffusers and gradio (33 s on a busy 2-core machine)
def test_studio_app_starts_quickly_on_loopback(tmp_path):
    port = free_port()
    env = dict(os.environ, STUDIO_MODELS=str(make_models(tmp_path / "models")), GRADIO_ANALYTICS_ENABLED="False",
               STUDIO_DATA=str(tmp_path / "data"))  # the shipped models' arena is made there on first start
    env.pop("STUDIO_APP_PASSWORD", None)
    start = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "studio", "app", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.time() - start < 60, "the app did not start within 60 s"
                time.sleep(0.25)
        print(f"studio app answered after {time.time() - start:.1f} s")
        with socket.socket() as s:  # loopback only: not reachable on another interface of this machine
            other = socket.gethostbyname(socket.gethostname())
            if not other.startswith("127."):
                assert s.connect_ex((other, port)) != 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_studio_app_warns_beyond_loopback(capsys, monkeypatch):
    from studio.cli.app import run
    from studio.cli import build_parser

    monkeypatch.setattr("studio_ui.app.launch", lambda *a, **k: None)  # do not serve
    monkeypatch.delenv("STUDIO_APP_PASSWORD", raising=False)
    run(build_parser().parse_args(["app", "--host", "0.0.0.0", "--port", "7999"]))
    err = capsys.readouterr().err
    assert "warning: binding 0.0.0.0" in err and "STUDIO_APP_PASSWORD" in err
    assert "no arena on 0.0.0.0" in err  # votes are admin data: an exposed app without a password has no arena
