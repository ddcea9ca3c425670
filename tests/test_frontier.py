"""The sampling frontier: the knee is the fastest setting whose every question stays inside the reference's
interval; per-setting results are reused after an interruption."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch

from studio.eval import frontier
from studio.eval.frontier import REFERENCE, SWAP, Setting, format_markdown, run_frontier, summarize, write_report


def point(setting: Setting, seconds: float, accuracy: dict[str, float]) -> dict:
    return dict(setting=asdict(setting), label=setting.label, seconds_per_image=seconds,
                questions={q: dict(accuracy=a, ci_low=a - 0.1, ci_high=a + 0.1, n=100) for q, a in accuracy.items()})


def test_the_knee_is_the_fastest_setting_that_keeps_every_question():
    points = [point(REFERENCE, 2.0, {"color": 0.9, "position": 0.3}),
              point(Setting("dpm++", 4), 0.4, {"color": 0.5, "position": 0.3}),  # fast, loses colour
              point(Setting("dpm++", 10), 0.9, {"color": 0.85, "position": 0.25}),  # keeps both
              point(Setting("dpm++", 15), 1.3, {"color": 0.9, "position": 0.3}),
              point(Setting("euler", 20), 1.5, {"color": 1.0, "position": 0.45})]  # above the interval: better
    summary = summarize(points)
    assert summary["knee"] == Setting("dpm++", 10).label and summary["knee_seconds"] == 0.9
    assert [p["keeps_prompt"] for p in points] == [True, False, True, True, True]
    assert [p["pareto"] for p in points] == [False, True, True, True, True]  # the reference: dominated by 15 steps
    text = format_markdown(dict(summary, points=points, model="m", n=100, repeats=3, resolution=64, torch_threads=2,
                                date="today"))
    assert "knee (the fastest setting that keeps the prompt): **dpm++ 10 steps, guidance 3**" in text
    assert "--n 100 --settings dpm++:4:3 dpm++:10:3 dpm++:15:3 euler:20:3`" in text  # not the default grid


def test_frontier_end_to_end_on_a_tiny_model(tmp_path, monkeypatch, tiny_core):
    torch.nn.init.normal_(tiny_core.exit.weight, std=0.1)
    tiny_core.register_to_config(training_phase="core")
    tiny_core.save_pretrained(tmp_path / "models" / "tiny")
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "models"))
    grid = (Setting("dpm++", 2), Setting("euler", 3, 2.0), Setting("dpm++", 3, 3.0, (-6.0, 3.0)))
    real_align, real_measure = frontier.align_model, frontier.measure
    result = run_frontier("tiny", tmp_path / "out", grid, n=4, repeats=1, progress=False)
    assert len(result["points"]) == 4 and result["points"][0]["label"] == REFERENCE.label  # reference added
    assert all(p["seconds_per_image"] > 0 and set(p["questions"]) >= {"color", "all"} for p in result["points"])
    assert result["knee"] in {p["label"] for p in result["points"] if p["keeps_prompt"]}

    def no_second_run(*args, **kwargs):
        raise AssertionError("a finished setting was measured again")

    monkeypatch.setattr(frontier, "measure", no_second_run)
    again = run_frontier("tiny", tmp_path / "out", grid, n=4, repeats=1, progress=False)
    assert [p["seconds_per_image"] for p in again["points"]] == [p["seconds_per_image"] for p in result["points"]]
    monkeypatch.setattr(frontier, "time_per_image", lambda model, setting, repeats, prompt: 0.125)
    retimed = run_frontier("tiny", tmp_path / "out", grid, n=4, repeats=1, progress=False, retime=True)
    assert {p["seconds_per_image"] for p in retimed["points"]} == {0.125}  # timed again, alignment kept
    assert [p["questions"] for p in retimed["points"]] == [p["questions"] for p in result["points"]]
    paths = write_report(again, tmp_path / "docs")
    assert [p.name for p in paths] == ["frontier-tiny-n4.md", "frontier-tiny-n4.json", "frontier-tiny-n4.html"]
    assert "| setting | s / image |" in paths[0].read_text()

    # a finished frontier gains the swap test without measuring alignment again
    monkeypatch.setattr(frontier, "align_model", no_second_run)
    with_swap = run_frontier("tiny", tmp_path / "out", grid, n=4, repeats=1, progress=False, swap_n=2)
    assert all(p["questions"][SWAP]["n"] == 2 for p in with_swap["points"]) and with_swap["swap_n"] == 2
    assert [{q: v for q, v in p["questions"].items() if q != SWAP} for p in with_swap["points"]] == [
        p["questions"] for p in result["points"]]
    # a count-prior setting takes the swap test of its prior-free twin (no swap caption names a count)
    monkeypatch.setattr(frontier, "align_model", real_align)
    monkeypatch.setattr(frontier, "measure", real_measure)
    monkeypatch.setattr(frontier, "measure_swap", no_second_run)
    prior = replace(grid[2], count_prior=1.0)
    both = run_frontier("tiny", tmp_path / "out", (*grid, prior), n=4, repeats=1, progress=False, swap_n=2)
    assert both["points"][-1]["label"] == prior.label
    assert both["points"][-1]["questions"][SWAP] == both["points"][-2]["questions"][SWAP]
    without = run_frontier("tiny", tmp_path / "out", grid, n=4, repeats=1, progress=False)
    assert all(SWAP not in p["questions"] for p in without["points"])  # every point answers the same questions

    # the same name shipped again with other weights: measured again, never read back from the old ones
    torch.nn.init.normal_(tiny_core.exit.weight, std=0.2)
    tiny_core.save_pretrained(tmp_path / "models" / "tiny")
    measured = []
    monkeypatch.setattr(frontier, "measure", lambda *args, **kwargs: measured.append(args[1]) or real_measure(
        *args, **kwargs))
    reshipped = run_frontier("tiny", tmp_path / "out", grid, n=4, repeats=1, progress=False)
    assert measured == [REFERENCE, *grid] and len({p["weights"] for p in reshipped["points"]}) == 1
    assert reshipped["points"][0]["weights"] != result["points"][0]["weights"]


def test_bad_frontier_settings_say_how_to_write_them():
    from studio.cli import CLIError
    from studio.cli.eval import _parse_setting

    assert _parse_setting("dpm++:15:3:-6:3") == Setting("dpm++", 15, 3.0, (-6.0, 3.0))
    assert _parse_setting("unipc:10") == Setting("unipc", 10)
    assert _parse_setting("dpm++:6:3:-6:3@count_prior=1") == Setting("dpm++", 6, 3.0, (-6.0, 3.0), 1.0)
    assert _parse_setting("dpm++:6:3:-6:3@count_prior=1,relation_prior=0.5") == Setting(
        "dpm++", 6, 3.0, (-6.0, 3.0), 1.0, 0.5)
    for bad in ("dpm++:fast", "dpm++:6@count_prior=9", "dpm++:6@prior=1", "dpm++:6@relation_prior=4",
                "dpm++:6@count_prior=1,count_prior=2"):
        with pytest.raises(CLIError, match="SAMPLER:STEPS"):
            _parse_setting(bad)


def test_a_setting_with_the_count_prior_is_its_own_point_and_preset(tmp_path, monkeypatch):
    from studio.eval.frontier import same_swap_test, speed_presets

    prior = Setting("dpm++", 6, 3.0, (-6.0, 3.0), 1.0)
    assert prior.spec == "dpm++:6:3:-6:3@count_prior=1" and prior.label.endswith(", count prior 1")
    assert prior.key != Setting("dpm++", 6, 3.0, (-6.0, 3.0)).key == "dpm++-6-g3-i-6_3"  # older caches still read
    assert prior.sampling_kwargs["count_prior"] == 1.0 and "count_prior" not in REFERENCE.sampling_kwargs
    # the swap test's relation captions name no count: the prior leaves them as they are
    assert same_swap_test(prior, 100) == replace(prior, count_prior=0.0) and same_swap_test(REFERENCE, 9) == REFERENCE
    monkeypatch.setattr(frontier, "swap_captions", lambda n: ["three red stars"] * n)
    assert same_swap_test(prior, 3) == prior
    points = [point(REFERENCE, 2.4, {"color": 0.9, "count": 0.5}), point(prior, 0.7, {"color": 0.9, "count": 0.8}),
              point(replace(prior, count_prior=0.0), 0.6, {"color": 0.9, "count": 0.6})]
    frontier.share_prior_free_times(points)  # the same network evaluations: timing noise must not rank them
    assert points[1]["seconds_per_image"] == 0.6 and points[0]["seconds_per_image"] == 2.4
    old = dict(point(Setting("dpm++", 6), 0.5, {"color": 0.5, "count": 0.5}))
    old["setting"].pop("count_prior")  # a point written before the count prior existed
    points.append(old)
    result = dict(summarize(points), points=points, model="m", n=100, date="today", torch_threads=2)
    presets = speed_presets(result)
    # as fast as its twin and more accurate: balanced, and here the most accurate too
    assert presets["balanced"]["count_prior"] == 1.0 and presets["balanced"]["guidance_interval"] == [-6.0, 3.0]
    assert presets["best"] == presets["balanced"]
    assert "count_prior" not in presets["fast"] and presets["fast"]["seconds_per_image"] == 0.5
    text = format_markdown(dict(result, repeats=3, resolution=64))
    assert "--settings dpm++:6:3:-6:3@count_prior=1 dpm++:6:3:-6:3 dpm++:6:3`" in text
    assert "takes that setting's time." in text  # the report says how a count-prior setting is timed


def test_a_setting_with_the_relation_prior_runs_its_own_swap_test_and_shares_its_twins_time():
    from studio.eval.frontier import same_swap_test, speed_presets

    both = Setting("dpm++", 6, 3.0, (-6.0, 3.0), 1.0, 0.5)
    assert both.spec == "dpm++:6:3:-6:3@count_prior=1,relation_prior=0.5"
    assert both.label.endswith(", count prior 1, relation prior 0.5") and both.key.endswith("-cp1-rp0.5")
    assert both.sampling_kwargs["relation_prior"] == 0.5 and "relation_prior" not in REFERENCE.sampling_kwargs
    assert same_swap_test(both, 100) == replace(both, count_prior=0.0)  # the relation prior acts on swap captions
    twin = replace(both, count_prior=0.0, relation_prior=0.0)
    points = [point(REFERENCE, 2.4, {"color": 0.9, "relation": 0.5}), point(twin, 0.6, {"color": 0.9, "relation": 0.5}),
              point(both, 0.64, {"color": 0.9, "relation": 0.9})]
    frontier.share_prior_free_times(points)
    assert points[2]["seconds_per_image"] == 0.6
    result = dict(summarize(points), points=points, model="m", n=100, date="today", torch_threads=2)
    presets = speed_presets(result)
    assert presets["balanced"]["relation_prior"] == 0.5 and presets["balanced"]["count_prior"] == 1.0
    assert "relation_prior" not in presets["fast"] or presets["fast"] == presets["balanced"]
    assert "*relation prior S*" in format_markdown(dict(result, repeats=3, resolution=64))


def test_speed_presets_are_named_by_the_measurement(tmp_path):
    from studio.eval.frontier import speed_presets, write_presets
    from studio.sampling import read_presets

    points = [point(REFERENCE, 4.4, {"color": 0.86, "position": 0.1}),
              point(Setting("dpm++", 6), 1.1, {"color": 0.6, "position": 0.1}),
              point(Setting("dpm++", 10), 1.8, {"color": 0.8, "position": 0.1}),
              point(Setting("dpm++", 8, 3.0, (-6.0, 3.0)), 0.9, {"color": 0.86, "position": 0.1})]
    result = dict(summarize(points), points=points, model="m", n=100, date="today", torch_threads=2)
    presets = speed_presets(result)
    # the guidance interval makes 8 steps the fastest setting and the one that keeps the prompt
    assert presets["fast"] == presets["balanced"]
    assert presets["balanced"]["steps"] == 8 and presets["balanced"]["guidance_interval"] == [-6.0, 3.0]
    assert presets["best"]["steps"] == 25 and presets["best"]["seconds_per_image"] == 4.4
    assert presets["best"]["guidance_interval"] is None
    write_presets(result, tmp_path)
    assert read_presets(tmp_path) == presets and read_presets(tmp_path / "missing") == {}


def test_the_swap_test_counts_as_a_question_and_best_is_the_most_accurate_setting_that_keeps_the_prompt():
    from studio.eval.frontier import speed_presets

    strong = Setting("dpm++", 25, 6.0, (-8.0, -1.8))
    points = [point(REFERENCE, 2.4, {"color": 0.9, "relation": 0.5, SWAP: 0.4}),
              point(Setting("dpm++", 6), 0.6, {"color": 0.9, "relation": 0.5, SWAP: 0.1}),  # loses the swap test
              point(strong, 2.0, {"color": 0.92, "relation": 0.6, SWAP: 0.55})]
    summary = summarize(points)
    assert [p["keeps_prompt"] for p in points] == [True, False, True]
    assert summary["knee"] == summary["best"] == strong.label
    assert points[2]["mean_accuracy"] == pytest.approx((0.92 + 0.6 + 0.55) / 3)
    result = dict(summary, points=points, model="m", n=100, swap_n=100, repeats=3, resolution=256, torch_threads=2,
                  date="today")
    presets = speed_presets(result)
    assert presets["best"]["guidance"] == 6.0 and presets["best"]["guidance_interval"] == [-8.0, -1.8]
    assert presets["fast"]["steps"] == 6
    text = format_markdown(result)
    assert "--n 100 --swap 100 --settings" in text and "| swap |" in text.splitlines()[7 + 1]
    assert f"best (the highest mean accuracy among those that keep it): **{strong.label}**" in text
    tie = [point(REFERENCE, 2.4, {"color": 0.9}), point(Setting("dpm++", 10), 0.9, {"color": 0.9})]
    assert summarize(tie)["best"] == REFERENCE.label  # a setting replaces the reference only by measuring better


def test_an_emoji_model_is_measured_on_its_trained_concepts(tmp_path, monkeypatch, tiny_core):
    import json

    from PIL import Image

    import studio.eval.wordings as W
    import studio.sampling
    from studio.errors import ConfigError, DataError
    from studio.eval.frontier import CONCEPT, speed_presets

    from conftest import COLOURS, NAMES, emoji_folder, thumb_features

    root = emoji_folder(tmp_path / "emoji")
    tiny_core.register_to_config(training_phase="core")
    folder = tmp_path / "models" / "tiny-emoji"
    tiny_core.save_pretrained(folder)
    (folder / "training.json").write_text(json.dumps({"data": {"source": str(root)}}))
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(W, "inception_features", thumb_features)
    drawn = []

    def generate(model, prompts, seed=0, sampler="dpm++", **kwargs):
        """Draws each caption's concept, except that euler draws every one as a ghost."""
        drawn.append((sampler, seed, kwargs["batch_size"], list(prompts)))
        names = ["ghost" if sampler == "euler" else p.removesuffix(", 3d style") for p in prompts]
        return [Image.new("RGB", (16, 16), COLOURS[NAMES.index(name)]) for name in names]

    real_generate = studio.sampling.generate
    monkeypatch.setattr(studio.sampling, "generate", generate)
    grid = (Setting("dpm++", 2), Setting("euler", 2))
    with pytest.raises(DataError, match="60 concepts is more than the 6 trained 3d emoji"):  # the default n
        run_frontier("tiny-emoji", tmp_path / "out", grid, repeats=1, progress=False)
    result = run_frontier("tiny-emoji", tmp_path / "out", grid, n=6, repeats=1, progress=False)
    assert result["measure"] == "concepts" and result["data"] == str(root)
    assert drawn[0] == ("dpm++", 0, 1, [f"{name}, 3d style" for name in NAMES])  # the captions, batch 1, seed i
    by_label = {p["label"]: p for p in result["points"]}
    assert by_label[REFERENCE.label]["questions"] == {CONCEPT: pytest.approx(dict(
        accuracy=1.0, ci_low=by_label[REFERENCE.label]["questions"][CONCEPT]["ci_low"], ci_high=1.0, correct=6, n=6))}
    assert by_label[grid[1].label]["questions"][CONCEPT]["correct"] == 1  # only the ghost is right
    assert not by_label[grid[1].label]["keeps_prompt"] and by_label[grid[0].label]["keeps_prompt"]
    assert speed_presets(result)["balanced"]["steps"] == 2
    text = format_markdown(result)
    assert "| concept |" in text and "of 6 trained concepts" in text and "chance 0.167" in text
    assert [p.name for p in write_report(result, tmp_path / "docs")][0] == "frontier-tiny-emoji-n6.md"
    for bad in (dict(swap_n=2), dict(grid=(replace(REFERENCE, count_prior=1.0),))):
        with pytest.raises(ConfigError, match="ask about shapes captions"):
            run_frontier("tiny-emoji", tmp_path / "out", **{"grid": grid, **bad}, n=6, repeats=1, progress=False)
    # the same model measured on shapes captions, when asked: its own points, not the concepts' cached ones
    assert frontier.frontier_data("tiny-emoji", "shapes") == ("shapes", False)
    monkeypatch.setattr(studio.sampling, "generate", real_generate)
    shapes = run_frontier("tiny-emoji", tmp_path / "out", grid, n=6, repeats=1, progress=False, data="shapes")
    assert shapes["measure"] == "alignment" and all("color" in p["questions"] for p in shapes["points"])
