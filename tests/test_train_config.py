"""Training configs: presets resolve for their phases, typos and bad values are clear ConfigErrors."""

from __future__ import annotations

import pytest

from studio.errors import ConfigError
from studio.train.config import PHASES, list_presets, load_config, parse_overrides, resolve, valid_keys

PHASES_OF = {"tiny": PHASES, "shapes-core-64": ("core",), "emoji-core-64": ("core",),
             "shapes-256": ("grow", "finetune", "scratch"), "emoji-256": ("grow", "finetune", "scratch"),
             "scratch-256": ("scratch",), "shapes-core-64-gpu": ("core",), "shapes-256-gpu": ("grow", "finetune"),
             "emoji-core-64-gpu": ("core",), "emoji-256-gpu": ("grow", "finetune", "scratch"),
             "shapes-core-64-layout": ("core",), "emoji-core-64-wordings": ("core",)}


def test_shipped_presets_exist():
    assert set(PHASES_OF) <= set(list_presets())


@pytest.mark.parametrize("preset,phase", [(p, ph) for p, phases in PHASES_OF.items() for ph in phases])
def test_presets_resolve(preset, phase):
    extra = ["init_from=some/model"] if phase in ("grow", "finetune") else []
    config = load_config(preset, phase, extra)
    assert config.phase == phase and config.preset == preset


def test_phase_section_and_overrides_win():
    recipe = {"lr": 1e-3, "max_steps": 10, "core": {"architecture": "tiny-core", "lr": 2e-3}}
    assert resolve(recipe, "core").lr == 2e-3
    assert resolve(recipe, "core", {"lr": 5e-4}).lr == 5e-4
    config = load_config("tiny", "core", ["lr=1e-4", "stage_channels=[8, 8]", "max_minutes=1.5", "max_steps=null"])
    assert config.lr == 1e-4 and config.stage_channels == [8, 8]
    assert config.max_minutes == 1.5 and config.max_steps is None
    # YAML reads a bare `no` as false; for a text key it still means "no"
    assert load_config("tiny", "core", ["mixed_precision=no"]).mixed_precision == "no"
    assert resolve({"mixed_precision": False, "core": {"architecture": "tiny-core"}}, "core").mixed_precision == "no"


def test_typo_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config("tiny", "core", ["learning_rate=1e-4"])
    message = str(err.value)
    assert "learning_rate" in message and "Valid keys" in message
    assert all(key in message for key in valid_keys())
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        resolve({"batch_sise": 4}, "core")
    with pytest.raises(ConfigError, match="section 'core'"):
        resolve({"core": {"lrr": 1}}, "core")


@pytest.mark.parametrize("text", ["?", "1: 2", "true: 1", "core:\n  null: 1"])
def test_keys_that_are_not_names_are_clear_errors(text, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="config keys must be names"):
        load_config(path, "core")


@pytest.mark.parametrize("override,match", [
    ("lr=-1", "lr must be > 0"),
    ("lr=fast", "lr must be"),
    ("batch_size=0", "batch_size must be >= 1"),
    ("batch_size=2.5", "batch_size must be"),
    ("cfg_dropout=1.5", "cfg_dropout"),
    ("mixed_precision=fp8", "mixed_precision must be one of"),
    ("loss_weighting=l1", "loss_weighting"),
    ("architecture=huge", "not a core preset"),
    ("max_steps=null", "set a budget"),
    ("ema_decay=1", "ema_decay"),
    ("compile=maybe", "compile must be"),
    ("low_res_path=true", "low_res_path is chosen when growing"),
    ("encoder_to_core=false", "encoder_to_core is chosen when growing"),
])
def test_bad_values(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("tiny", "core", [override])


def test_grow_needs_parent_and_bad_syntax():
    with pytest.raises(ConfigError, match="--from"):
        load_config("tiny", "grow")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])
    with pytest.raises(ConfigError, match="unknown training config"):
        load_config("no-such-preset", "core")


def test_cli_reports_config_errors(capsys):
    from studio.cli import main

    assert main(["train", "core", "--config", "tiny", "--set", "lrr=1", "--out", "unused"]) == 2
    assert "Valid keys" in capsys.readouterr().err


def test_position_and_relation_captions_can_take_a_larger_share_of_each_epoch():
    import numpy as np

    from studio.train.batches import oversample

    records = [dict(scene=dict(position="top", relation=None)), dict(scene=dict(position=None, relation="above")),
               dict(scene=dict(position=None, relation=None)), dict(scene=dict(position="left", relation=None)),
               dict(scene=dict(kind="count", position=None, relation=None))]
    indices = np.arange(4)
    assert oversample(records, indices) is indices  # the default leaves the epoch as it is
    assert oversample(records, indices, position_repeat=3).tolist() == [0, 0, 0, 1, 2, 3, 3, 3]
    assert oversample(records, indices, relation_repeat=2).tolist() == [0, 1, 1, 2, 3]
    assert oversample(records, np.arange(5), count_repeat=2).tolist() == [0, 1, 2, 3, 4, 4]
    with pytest.raises(ConfigError, match="name a position"):  # e.g. emoji: nothing to repeat
        oversample([dict(caption="a cat")] * 2, np.arange(2), position_repeat=3)
    with pytest.raises(ConfigError, match="position_repeat must be >= 1"):
        load_config("tiny", "core", ["position_repeat=0"])


def test_each_draw_of_an_example_draws_one_of_its_wordings(tmp_path, monkeypatch):
    import numpy as np
    import torch

    from studio.data.wordings import training_wordings
    from studio.train.batches import build_batches

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path))
    plain, _ = build_batches(load_config("tiny", "core"), 16, progress=False)
    source, info = build_batches(load_config("tiny", "core", ["caption_wordings=true"]), 16, progress=False)
    assert plain.caption_ids.shape[1] == 1 and source.caption_ids.shape[1] == 4
    assert info.wordings_per_example == 4.0 and info.unique_captions > 3 * len(plain.indices) // 2
    record = source.dataset.records[0]
    assert training_wordings(record)[0] == record["caption"] and len(set(training_wordings(record))) == 4
    # what batch() draws for one example over many steps: every one of its wordings, nothing else
    source.cfg_dropout = 0.0
    generator, drawn = torch.Generator().manual_seed(0), {}
    for step in range(40):
        idx = source.global_indices(step)
        tokens = source.batch(step, generator)[1].pooled
        for i, row in zip(idx, tokens):
            drawn.setdefault(int(i), set()).add(tuple(row[:4].tolist()))
    assert max(len(v) for v in drawn.values()) == 4
    table = {tuple(source.text.pooled[r][:4].tolist()) for r in source.caption_ids[0]}
    assert drawn[0] <= table
    assert np.array_equal(source.wordings[source.indices], np.full(len(source.indices), 4))


def test_caption_contrast_pairs_each_caption_with_one_of_its_wrong_twins(tmp_path, monkeypatch):
    import torch

    from studio.data.scene import opposite_count, opposite_relation, shape_twins
    from studio.text import precompute_embeddings
    from studio.train.batches import build_batches

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path))
    plain, _ = build_batches(load_config("tiny", "core"), 16, progress=False)
    assert plain.batch_and_opposites(0, torch.Generator().manual_seed(0))[2] is None
    source, info = build_batches(load_config("tiny", "core", ["relation_contrast=1", "count_contrast=0.5",
                                                              "shape_contrast=0.25"]), 16, progress=False)
    assert info.unique_captions == len({r["caption"] for r in source.dataset.records})  # twins not counted
    pooled = {tuple(source.text.pooled[r][:4].tolist()): r for r in range(len(source.text))}
    drawn = {"relation": 0, "count": 0, "shape": 0}
    for step in range(6):
        generator = torch.Generator().manual_seed(step)
        images, text, (rows, opposite, weights) = source.batch_and_opposites(step, generator)
        again = source.batch(step, torch.Generator().manual_seed(step))[1]
        assert torch.equal(again.pooled, text.pooled)  # the same draw as batch()
        captions = [source.dataset.records[i]["caption"] for i in source.global_indices(step)]
        kept = [j for j in range(len(captions))  # not dropped for guidance
                if pooled[tuple(text.pooled[j][:4].tolist())] != source.empty_id]
        assert rows.tolist() == kept  # every caption of `shapes` names a shape, so each has a twin
        for j, twin_pooled, weight in zip(kept, opposite.pooled, weights.tolist()):
            caption = captions[j]
            keys = {"relation": [opposite_relation(caption)] if opposite_relation(caption) else [],
                    "count": [opposite_count(caption)] if opposite_count(caption) else [],
                    "shape": shape_twins(caption)}
            candidates = sum(keys.values(), [])
            distance = (precompute_embeddings(candidates, progress=False).pooled - twin_pooled).abs().amax(1)
            assert float(distance.min()) < 1e-3  # the drawn twin is one of the caption's own
            twin = candidates[int(distance.argmin())]
            drawn[next(k for k, twins in keys.items() if twin in twins)] += 1
            # the drawn twin carries the sum of the caption's key weights
            assert weight == pytest.approx(sum(w for k, w in (("relation", 1.0), ("count", 0.5), ("shape", 0.25))
                                               if keys[k]))
    assert min(drawn.values()) > 0, drawn
    assert drawn["relation"] > drawn["shape"] / 4  # relation captions draw their relation twin 4 times in 5


def test_opposite_table_draws_a_key_by_its_weight_and_a_twin_uniformly():
    import numpy as np

    from studio.train.batches import opposite_table

    unique = ["", "a", "a'", "b", "b1", "b2", "c"]
    rows, chances, weights = opposite_table(unique, {"a": {"relation": (["a'"], 3.0)},
                                                     "b": {"count": (["a"], 3.0), "shape": (["b1", "b2"], 1.0)}})
    assert rows.shape == chances.shape == (7, 3) and weights.tolist() == [0, 3, 0, 4, 0, 0, 0]
    assert rows[1].tolist() == [2, -1, -1] and chances[1].tolist() == [1, 0, 0]
    assert rows[3].tolist() == [1, 4, 5] and np.allclose(chances[3], [0.75, 0.125, 0.125])
    assert (rows[[0, 2, 4, 5, 6]] == -1).all() and chances[[0, 2, 4, 5, 6]].sum() == 0


def test_caption_contrasts_need_relation_and_count_captions(tmp_path, monkeypatch):
    from PIL import Image

    from studio.train.batches import build_batches

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path))
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, name in enumerate(["a smiling face", "a red apple"]):
        Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(name)
    config = load_config("tiny", "core", [f"data={folder}", "relation_contrast=1"])
    with pytest.raises(ConfigError, match="relation"):
        build_batches(config, 16, progress=False)
    with pytest.raises(ConfigError, match="count_contrast needs captions that count"):
        build_batches(load_config("tiny", "core", [f"data={folder}", "count_contrast=1"]), 16, progress=False)
    with pytest.raises(ConfigError, match="shape_contrast needs captions that name a shape"):
        build_batches(load_config("tiny", "core", [f"data={folder}", "shape_contrast=1"]), 16, progress=False)
    for key in ("relation_contrast", "count_contrast", "shape_contrast"):
        with pytest.raises(ConfigError, match=key):
            load_config("tiny", "core", [f"{key}=-1"])
