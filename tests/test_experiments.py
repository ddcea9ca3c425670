"""The experiment driver end to end on tiny models (seconds): outputs' structure, FLOP accounting, spikes,
the report and the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest

from studio.eval.experiments import (ExperimentScale, build_core, build_grown, count_spikes, equal_compute_steps,
                                     run_experiments, summarize, training_flops_per_image)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments")
    return run_experiments(ExperimentScale.tiny(), out, progress=False), out


def test_a_frozen_core_costs_fewer_flops_and_deeper_cores_more():
    scale = ExperimentScale.tiny()
    frozen = training_flops_per_image(build_grown(scale, frozen=True))
    unfrozen = training_flops_per_image(build_grown(scale, frozen=False))
    assert 0 < frozen < unfrozen  # no weight gradients for the frozen core
    assert training_flops_per_image(build_core(scale, 1)) < training_flops_per_image(build_core(scale, 2))


def test_flops_per_image_do_not_depend_on_the_counting_batch():
    model = build_grown(ExperimentScale.tiny())
    assert training_flops_per_image(model, batch=2) == pytest.approx(training_flops_per_image(model, batch=4))


def test_equal_compute_steps_spend_the_budget_within_one_step():
    budget = 150 * 16 * 6.6e8
    steps = equal_compute_steps(budget, 7.0e8, 16)
    assert abs(steps * 16 * 7.0e8 - budget) <= 16 * 7.0e8 / 2
    with pytest.raises(Exception, match="positive"):
        equal_compute_steps(0, 1.0, 16)


def test_count_spikes_against_the_trailing_median():
    losses = [1.0] * 10 + [5.0] + [1.0] * 5 + [float("nan")]
    assert count_spikes(losses, factor=3.0, window=5) == 2  # the 5.0 and the non-finite loss
    assert count_spikes([1.0, 1.2, 0.9, 1.1] * 5, factor=3.0, window=4) == 0


def test_gpu_scale_trains_the_same_models_on_many_more_images():
    default, gpu = ExperimentScale(), ExperimentScale.gpu().validate()
    architecture = ("core_resolution", "resolution", "grid", "core_channels", "width", "depth", "heads",
                    "stage_channels", "prediction")
    assert all(getattr(gpu, k) == getattr(default, k) for k in architecture)
    assert gpu.core_steps * gpu.batch_size >= 25 * default.core_steps * default.batch_size
    assert gpu.grow_steps * gpu.batch_size >= 25 * default.grow_steps * default.batch_size


def test_scale_validation_names_the_problem():
    with pytest.raises(Exception, match="stage_channels"):
        dataclasses.replace(ExperimentScale.tiny(), stage_channels=(8,)).validate()
    with pytest.raises(Exception, match="fid_n"):
        dataclasses.replace(ExperimentScale.tiny(), fid_n=10).validate()


def test_driver_writes_every_experiment_with_equal_highres_compute(tiny_results):
    results, out = tiny_results
    assert json.loads((out / "results.json").read_text())["scale"] == results["scale"]
    runs = results["runs"]
    assert {r["experiment"] for r in runs} == {"growth_vs_scratch", "frozen_vs_finetune", "core_depth",
                                               "small_batch"}
    scale, flops = ExperimentScale.tiny(), results["flops_per_image"]
    budget = results["highres_budget_flops"]
    assert budget == pytest.approx(scale.grow_steps * scale.batch_size * flops["grown_frozen"])
    for r in runs:
        if r["experiment"] in ("growth_vs_scratch", "frozen_vs_finetune"):
            per_step = scale.batch_size * max(flops["grown_frozen"], flops["grown_unfrozen"])
            assert abs(r["highres_flops"] - budget) <= per_step / 2, r["variant"]  # equal within one step
            assert r["evaluation"]["resolution"] == scale.resolution
            assert set(r["evaluation"]["alignment"]["all"]) >= {"accuracy", "ci_low", "ci_high", "n"}
            assert r["curve"] and r["curve"][-1]["images_seen"] == sum(p["images"] for k, p in r["phases"].items()
                                                                       if k != "core")
    grown = next(r for r in runs if r["variant"] == "grown (core frozen)" and r["experiment"] == "growth_vs_scratch")
    scratch = next(r for r in runs if r["variant"] == "scratch" and r["experiment"] == "growth_vs_scratch")
    assert grown["core_flops"] > 0 and scratch["core_flops"] == 0  # pre-training shown separately
    # an unfrozen core costs more per step: no more steps than growth for the same budget
    assert scratch["steps"] == equal_compute_steps(budget, flops["grown_unfrozen"], scale.batch_size) <= grown["steps"]
    depths = sorted(r["depth"] for r in runs if r["experiment"] == "core_depth")
    assert depths == sorted(scale.depths)
    assert all(r["evaluation"]["resolution"] == scale.core_resolution for r in runs
               if r["experiment"] == "core_depth")
    small = [r for r in runs if r["experiment"] == "small_batch"]
    assert len(small) == 2 and all(r["batch_size"] == scale.small_batch and r["steps"] == scale.small_batch_steps
                                   and len(r["curve"]) == scale.small_batch_steps for r in small)
    assert set(results["ceiling"]) == {str(scale.core_resolution), str(scale.resolution)}


def test_summary_pools_seeds_and_the_report_is_written(tiny_results, tmp_path):
    from studio.eval.experiments_report import format_table, write_report

    results, _ = tiny_results
    rows = {(r["experiment"], r["variant"]): r for r in summarize(results)}
    row = rows[("growth_vs_scratch", "scratch")]
    assert row["align_low"] - 1e-9 <= row["align"] <= row["align_high"] + 1e-9  # Wilson bounds, rounding aside
    assert row["align_n"] == ExperimentScale.tiny().eval_n
    assert "growth_vs_scratch" in format_table(results)
    written = write_report(results, tmp_path)
    names = {p.name for p in written}
    assert {"experiments.md", "experiments.json", "experiments-compute.html", "experiments-loss.html",
            "experiments-depth.html", "experiments-small-batch.html"} <= names
    md = (tmp_path / "experiments.md").read_text()
    assert "| growth_vs_scratch | scratch |" in md and "studio experiment run" in md
    assert json.loads((tmp_path / "experiments.json").read_text())["summary"]


def test_a_rerun_reuses_finished_runs(tiny_results):
    results, out = tiny_results
    stamp = (out / "grow-s0" / "config.json").stat().st_mtime_ns
    again = run_experiments(ExperimentScale.tiny(), out, experiments=(1,), progress=False)
    assert (out / "grow-s0" / "config.json").stat().st_mtime_ns == stamp
    assert [r["evaluation"] for r in again["runs"]] == [r["evaluation"] for r in results["runs"]
                                                       if r["experiment"] == "growth_vs_scratch"]


def test_cli_report_and_errors(tiny_results, tmp_path, capsys):
    from studio.cli import main

    _, out = tiny_results
    assert main(["experiment", "report", "--out", str(out), "--docs", str(tmp_path / "docs")]) == 0
    assert (tmp_path / "docs" / "experiments.md").is_file()
    assert main(["experiment", "report", "--out", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["experiment", "run", "--scale", "tiny", "--experiments", "5", "--out", str(tmp_path / "x")]) == 2
    assert main(["experiment", "run", "--scale", "tiny", "--core", "shapes-core-64", "--out", str(tmp_path / "x")]) == 2
    assert "--scale pretrained" in capsys.readouterr().err


def test_reuse_only_computes_nothing_and_lists_what_is_missing(tmp_path):
    results = run_experiments(ExperimentScale.tiny(), tmp_path, experiments=(1, 3), reuse_only=True, progress=False)
    assert results["runs"] == []
    assert [(s["seed"], s["experiment"]) for s in results["skipped"]] == [(0, 1), (0, 3)]
    assert not (tmp_path / "core-d1-s0" / "config.json").exists()


@pytest.fixture(scope="module")
def pretrained_results(tiny_results, tmp_path_factory):
    """Experiments 1, 2 and 4 grown from a finished tiny core, both growth arms."""
    _, tiny_out = tiny_results
    scale = dataclasses.replace(ExperimentScale.tiny(), core_from=str(tiny_out / "core-d1-s0"), depths=(1,),
                                growth_arms=("path", "paper"))
    out = tmp_path_factory.mktemp("experiments-pretrained")
    return scale, run_experiments(scale, out, experiments=(1, 2, 4), progress=False), out


def test_a_pretrained_core_is_grown_both_ways_at_equal_compute(pretrained_results):
    from studio.eval.experiments import GROWTH_ARMS

    scale, results, out = pretrained_results
    assert not list(out.glob("core-d*"))  # the core was used as it is, not trained
    runs, flops = results["runs"], results["flops_per_image"]
    variants = {(r["experiment"], r["variant"]) for r in runs}
    assert {("growth_vs_scratch", GROWTH_ARMS["path"]), ("growth_vs_scratch", GROWTH_ARMS["paper"]),
            ("growth_vs_scratch", "scratch"), ("frozen_vs_finetune", "grown, then finetuned"),
            ("small_batch", GROWTH_ARMS["path"]), ("small_batch", "scratch")} <= variants
    budget = results["highres_budget_flops"]
    assert budget == pytest.approx(scale.grow_steps * scale.batch_size * flops["grown_path"])  # the first arm
    assert flops["grown_path"] > flops["grown_frozen"]  # the path's pooling and shallow layers cost a little
    for r in runs:
        if r["experiment"] in ("growth_vs_scratch", "frozen_vs_finetune"):
            per_step = scale.batch_size * max(flops.values())
            assert abs(r["highres_flops"] - budget) <= per_step / 2, r["variant"]
    core = results["pretrained_core"]
    grown = next(r for r in runs if r["variant"] == GROWTH_ARMS["path"] and r["experiment"] == "growth_vs_scratch")
    assert grown["core_flops"] == pytest.approx(core["images_seen"] * flops["core_d1"])
    reference = [r for r in runs if r["experiment"] == "core_reference"]
    assert len(reference) == 1 and reference[0]["evaluation"]["resolution"] == scale.core_resolution
    assert (out / "core-reference" / "eval.json").is_file()  # cached beside the runs, not in the core's folder
    assert (out / "core-reference" / "samples.png").is_file()
    from PIL import Image

    grid = Image.open(reference[0]["evaluation"]["samples"])
    assert grid.height > scale.core_resolution and len(results["grid_captions"]) == min(8, scale.eval_n)
    assert not (out.parent / "eval.json").exists()


def test_pretrained_report_has_its_own_files_and_compares_every_arm(pretrained_results, tmp_path):
    from studio.eval.experiments_report import write_report

    _, results, _ = pretrained_results
    names = {p.name for p in write_report(results, tmp_path)}
    assert {"experiments-pretrained.md", "experiments-pretrained.json", "experiments-pretrained-compute.html"} <= names
    assert "experiments-pretrained-depth.html" not in names and "experiments.md" not in names
    assert "experiments-pretrained-samples-scratch.png" in names  # each variant's first images, seed 0
    md = (tmp_path / "experiments-pretrained.md").read_text()
    for line in ("grown (path) 0.", "grown (paper) 0.", "vs the core alone", "Per question, the 95% intervals",
                 "--scale pretrained", "## Samples"):
        assert line in md


def test_pretrained_scale_refuses_what_it_cannot_do(tiny_results, tmp_path):
    from studio.errors import ConfigError

    _, tiny_out = tiny_results
    scale = dataclasses.replace(ExperimentScale.tiny(), core_from=str(tiny_out / "core-d1-s0"), depths=(1,))
    with pytest.raises(ConfigError, match="experiment 3"):
        run_experiments(scale, tmp_path, experiments=(3,), progress=False)
    with pytest.raises(ConfigError, match="not the scale's core"):  # a width the core does not have
        run_experiments(dataclasses.replace(scale, width=24), tmp_path, experiments=(1,), progress=False)
    with pytest.raises(ConfigError, match="one depth"):
        dataclasses.replace(scale, depths=(1, 2)).validate()
    with pytest.raises(ConfigError, match="growth_arms"):
        dataclasses.replace(scale, growth_arms=("path", "path")).validate()


def test_the_pretrained_scale_matches_the_shipped_core():
    from studio.eval.experiments import _pretrained_core

    scale = ExperimentScale.pretrained().validate()
    assert _pretrained_core(scale).name == "shapes-core-64"
    assert scale.growth_arms[0] == "path" and scale.resolution > scale.core_resolution


def test_divergence_is_read_from_medians_not_from_outliers():
    from studio.eval.experiments import _diverged

    assert not _diverged([1.0, 1.0, 90.0, 1.0, 1.0] + [0.9, 0.8, 150.0, 0.8, 0.7], factor=1.5)  # spikes alone
    assert not _diverged([0.02] * 10 + [0.025] * 10, factor=1.5)  # a trained start that stays where it was
    assert _diverged([0.5] * 10 + [2.0] * 10, factor=1.5)  # ended clearly worse
    assert _diverged([0.5] * 5 + [float("nan")] * 5, factor=1.5) is False  # finite tail: judged on finite losses
    assert _diverged([float("nan")] * 5, factor=1.5)  # nothing finite: diverged
