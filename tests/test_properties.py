"""Property-based tests (hypothesis): whatever a user types into the caption parser, the training config
loader, the vote API or the command line gives a result or a clean StudioError / usage error, never an
uncaught exception (a traceback in front of the user).

Example counts are small (<= 50 per test, no deadline) so the file runs in well under a minute on a busy CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from studio.data.scene import BACKGROUNDS, COLORS, COUNT_WORDS, PLURALS, POSITION_PHRASES, RELATIONS, SHAPES, SIZES  # noqa: E402,E501
from studio.data.shapes import CaptionError, caption_for, caption_variants, parse_caption, sample_scene  # noqa: E402
from studio.errors import ConfigError, StudioError  # noqa: E402

# $STUDIO_PROPERTY_EXAMPLES scales every test (e.g. 500 for a long fuzzing session, 5 on a loaded machine).
EXAMPLES = int(os.environ.get("STUDIO_PROPERTY_EXAMPLES", "50"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=max(1, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Awkward text: control characters, NUL, surrogate-free unicode, very long runs, numbers as text.
nasty_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["", " ", "\x00", "\n", "../../etc/passwd", "nan", "inf", "-1", "1e999", "x" * 5000,
                     "a red star", "🙂" * 50, "DROP TABLE votes;--", "'\"", "%s%n", "\\"]),
)


# ============================================================================================ captions
CAPTION_WORDS = sorted({*COLORS, *SHAPES, *SIZES, *BACKGROUNDS, *COUNT_WORDS.values(), *PLURALS.values(),
                        *RELATIONS, *(p.strip() for p in POSITION_PHRASES.values()), "a", "an", "on", "background",
                        "the", "of", "in"})
near_captions = st.lists(st.sampled_from(CAPTION_WORDS), min_size=1, max_size=14).map(" ".join)
PARSED_KEYS = {"kind", "background", "objects", "count", "position", "relation"}


def _parse_or_clean_error(text: str) -> dict | None:
    try:
        parsed = parse_caption(text)
    except CaptionError as err:
        assert "not a canonical shapes caption" in str(err)
        return None
    assert set(parsed) == PARSED_KEYS
    assert parsed["kind"] in ("single", "count", "relation") and parsed["background"] in BACKGROUNDS
    assert len(parsed["objects"]) == parsed["count"] >= 1
    return parsed


@FAST
@given(st.one_of(nasty_text, near_captions, near_captions.map(lambda s: s + " on a white background")))
def test_caption_parser_gives_a_parse_or_a_caption_error(text):
    _parse_or_clean_error(text)


@FAST
@given(index=st.integers(0, 10**6), seed=st.integers(0, 2**31))
def test_every_sampled_caption_parses_back_to_its_scene(index, seed):
    scene = sample_scene(index, seed)
    parsed = _parse_or_clean_error(scene.caption)
    assert parsed is not None, scene.caption
    assert parsed["kind"] == scene.kind and parsed["background"] == scene.background
    assert [o["color"] for o in parsed["objects"]] == [o.color for o in scene.objects]
    assert [o["shape"] for o in parsed["objects"]] == [o.shape for o in scene.objects]
    assert parsed["relation"] == scene.relation and parsed["position"] == scene.position
    assert caption_for(scene) == scene.caption
    for variant in caption_variants(scene):  # paraphrases are outside the grammar or parse: never a crash
        _parse_or_clean_error(variant)


# ============================================================================================ train config
from studio.train.config import PHASES, list_presets, load_config, parse_overrides, read_recipe, resolve, valid_keys  # noqa: E402,E501

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
              st.text(max_size=12)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=3)),
    max_leaves=8,
)
config_keys = st.one_of(st.sampled_from(valid_keys()), st.sampled_from(PHASES), st.text(max_size=12))


def _config_or_clean_error(make):
    try:
        config = make()
    except ConfigError as err:
        assert str(err)
        return None
    assert config.phase in PHASES
    return config


@FAST
@given(recipe=st.dictionaries(config_keys, json_values, max_size=6), phase=st.sampled_from(PHASES + ("bogus",)))
def test_config_resolve_random_recipes(recipe, phase):
    _config_or_clean_error(lambda: resolve(recipe, phase))


@FAST
@given(preset=st.sampled_from(list_presets()), key=st.sampled_from(valid_keys()), value=json_values,
       phase=st.sampled_from(PHASES))
def test_config_one_bad_value_in_a_real_preset(preset, key, value, phase):
    recipe, _ = read_recipe(preset)
    recipe = {**recipe, key: value, "init_from": "runs/parent"}
    _config_or_clean_error(lambda: resolve(recipe, phase))


@FAST
@given(items=st.lists(st.one_of(nasty_text, st.builds(lambda k, v: f"{k}={v}", st.sampled_from(valid_keys()),
                                                      nasty_text)), max_size=4))
def test_config_overrides_parse_or_fail_cleanly(items):
    try:
        parsed = parse_overrides(items)
    except ConfigError:
        return
    assert set(parsed) <= set(valid_keys())


@FAST
@given(text=st.one_of(nasty_text, st.dictionaries(config_keys, json_values, max_size=5).map(yaml.safe_dump)),
       phase=st.sampled_from(PHASES))
def test_config_from_a_yaml_file(text, phase):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        _config_or_clean_error(lambda: load_config(path, phase))


# ============================================================================================ vote API
from studio.arena import ArenaError, Campaign  # noqa: E402
from studio.arena.campaign import demo_campaign  # noqa: E402
from studio.arena.store import DuplicateVoteError, NoBattlesLeftError, RaterCapReachedError, UnknownBattleError  # noqa: E402,E501

raters = st.one_of(st.sampled_from(["alice", "bob", " alice ", "carol"]), nasty_text)
choices = st.one_of(st.sampled_from(["left", "right", "tie", "both_bad", "Both-Bad", " LEFT "]), nasty_text)
vote_ops = st.lists(st.one_of(
    st.tuples(st.just("next"), raters),
    st.tuples(st.just("vote"), st.integers(0, 30), choices),  # token by index into those served so far
    st.tuples(st.just("vote_token"), nasty_text, choices),  # a made-up token
    st.tuples(st.just("skip"), st.integers(0, 30)),
), max_size=12)


@pytest.fixture(scope="module")
def vote_campaign(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vote-api") / "campaign"
    demo_campaign(directory, n_contenders=3, n_prompts=3, seeds=1, max_votes_per_rater=6).close()
    campaign = Campaign.open(directory)
    campaign.model = {"served": [], "voted": set(), "skipped": set()}  # what the test saw, across examples
    yield campaign
    campaign.close()


@FAST
@given(ops=vote_ops)
def test_vote_api_random_sessions(vote_campaign, ops):
    campaign, seen = vote_campaign, vote_campaign.model
    before = campaign.store.vote_count()
    stored = 0
    for op in ops:
        try:
            if op[0] == "next":
                battle = campaign.next_battle(op[1])
                assert battle.left_image != battle.right_image
                if battle.token not in seen["served"]:
                    seen["served"].append(battle.token)
            elif op[0] in ("vote", "vote_token"):
                token = op[1] if op[0] == "vote_token" else (seen["served"] or ["none"])[op[1] % max(1, len(seen["served"]))]
                was_voted = token in seen["voted"]
                try:
                    reveal = campaign.vote(token, op[2])
                except DuplicateVoteError:
                    assert was_voted
                    continue
                assert not was_voted and token not in seen["skipped"]
                assert reveal.choice in ("left", "right", "tie", "both_bad")
                seen["voted"].add(token)
                stored += 1
            else:
                if not seen["served"]:
                    continue
                token = seen["served"][op[1] % len(seen["served"])]
                campaign.skip(token)
                assert token not in seen["voted"]
                seen["skipped"].add(token)
        except (NoBattlesLeftError, RaterCapReachedError, UnknownBattleError):
            pass
        except ArenaError as err:  # any other refusal is still a clean, worded error
            assert str(err)
    assert campaign.store.vote_count() == before + stored  # every accepted vote stored, nothing else
    rows = campaign.store._read("SELECT rater_id, battle_id, COUNT(*) FROM votes GROUP BY 1, 2 HAVING COUNT(*) > 1")
    assert not rows  # never two votes by one rater on one battle


# ============================================================================================ CLI
from studio.cli import build_parser, main  # noqa: E402


def _leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(argv prefix, parser) of every command and sub-command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    yield path, parser
    for name, child in subs[0].choices.items():
        yield from _leaf_parsers(child, path + (name,))


PARSER = build_parser()
COMMANDS = [(path, p) for path, p in _leaf_parsers(PARSER) if path]
odd_values = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "3", "1e9", "nan", "inf", "-inf", "2.5", str(2**63), str(2**64),
                     "9" * 40, "", "dpm++", "magic", "../../etc", "x" * 300, "--", "-", "None", "[1, 2]"]),
    st.text(max_size=15),
)


@st.composite
def random_argv(draw, commands=COMMANDS):
    path, parser = draw(st.sampled_from(commands))
    actions = [a for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction))]
    argv = list(path)
    for action in draw(st.lists(st.sampled_from(actions), max_size=5)) if actions else []:
        flag = [draw(st.sampled_from(action.option_strings))] if action.option_strings else []
        n = 0 if action.nargs == 0 else 2 if action.nargs == 2 else draw(st.integers(0, 2))
        argv += flag + [draw(odd_values) for _ in range(n)]
    if draw(st.booleans()):
        argv.append(draw(odd_values))
    return argv


def _run_quietly(fn):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result = fn()
        except SystemExit as exc:
            result = exc
    return result, out.getvalue(), err.getvalue()


@FAST
@given(argv=random_argv())
def test_cli_parsing_never_tracebacks(argv):
    result, out, err = _run_quietly(lambda: build_parser().parse_args(argv))
    if isinstance(result, SystemExit):
        assert result.code in (0, 2), (argv, result.code)
        if result.code == 2:
            assert "error:" in err, (argv, err)  # argparse names the bad option and value
    else:
        assert isinstance(result, argparse.Namespace)
    assert "Traceback" not in out + err


# Commands that run for real on random values: cheap, and reading only (or writing under a temp folder).
SAFE_OUTPUTS = ["out.png", "samples", "sub/dir/x.png", "/proc/no-such-dir/x.png", "votes.csv", "votes.jsonl",
                "votes.txt", "report.json"]
OUTPUT_FLAGS = {"--out", "--frames", "--json", "--markdown", "--html"}


@st.composite
def runnable_argv(draw):
    """sample / info / arena status|report|export / data folder-check with odd values; outputs stay inside
    the working folder (the tests may run as root: never let random text name a file to write)."""
    kind = draw(st.sampled_from(["sample", "info", "arena status", "arena report", "arena export",
                                 "data folder-check"]))
    model = draw(st.sampled_from(["tiny-core", "../../etc", "no-such-model", "", "/", "tiny-core/..", "x" * 200]))
    value = draw(odd_values)
    if kind == "sample":
        argv = ["sample", "--model", model, "--steps", draw(st.sampled_from(["1", "2", "0", "-3", "x", "1001"]))]
        argv += draw(st.sampled_from([["--prompt", value], ["--prompt", ""], ["--prompts", value],
                                      ["--prompts", "prompts.txt"], ["--prompts", "empty.txt"]]))
        argv += draw(st.sampled_from([[], ["--seed", value], ["--guidance", value], ["--sampler", value],
                                      ["--batch-size", value], ["--guidance-interval", value, "4"]]))
        argv += ["--out", draw(st.sampled_from(SAFE_OUTPUTS))]
    elif kind == "info":
        argv = ["info", model] + draw(st.sampled_from([[], ["--json"]]))
    elif kind == "data folder-check":
        folder = draw(st.sampled_from(["no-such-dir", ".", "campaign", "campaign/images", "prompts.txt",
                                       "../../no-such-dir", ""]))  # never random text: "/" would scan the disk
        argv = ["data", "folder-check", folder,
                "--resolution", draw(st.sampled_from(["16", "8", value]))]
    else:
        campaign = draw(st.sampled_from(["campaign", value, ".", "prompts.txt"]))
        argv = kind.split() + ["--campaign", campaign]
        if kind == "arena export":
            argv += ["--out", draw(st.sampled_from(SAFE_OUTPUTS))]
        elif kind == "arena report":
            argv += draw(st.sampled_from([["--quiet"], ["--bootstrap", draw(st.sampled_from(["0", "10", "-1"]))],
                                          ["--json", "report.json", "--quiet"], ["--ties", value]]))
    return argv


@pytest.fixture(scope="module")
def cli_sandbox(tmp_path_factory):
    """A working folder with a prompt file, an empty file, a vote campaign, and a tiny model on $STUDIO_MODELS."""
    from studio.models import ShallowUViT, core_preset

    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    core = ShallowUViT(**core_preset("tiny-core"))
    core.register_to_config(training_phase="core")
    core.save_pretrained(root / "models" / "tiny-core")
    (root / "work").mkdir()
    (root / "work" / "prompts.txt").write_text("a red star on a white background\n\nthree blue circles\n")
    (root / "work" / "empty.txt").write_text("\n\n")
    demo_campaign(root / "work" / "campaign", n_contenders=2, n_prompts=2, seeds=1).close()
    old = os.environ.get("STUDIO_MODELS")
    os.environ["STUDIO_MODELS"] = str(root / "models")
    yield root / "work"
    if old is None:
        os.environ.pop("STUDIO_MODELS", None)
    else:
        os.environ["STUDIO_MODELS"] = old


@SLOW
@given(argv=runnable_argv())
def test_cli_main_gives_a_result_or_a_clean_error(cli_sandbox, argv):
    assert not any(flag in OUTPUT_FLAGS and not (value in SAFE_OUTPUTS)
                   for flag, value in zip(argv, argv[1:]))  # the generator keeps writes in the sandbox
    cwd = os.getcwd()
    os.chdir(cli_sandbox)
    try:
        result, out, err = _run_quietly(lambda: main(argv))
    finally:
        os.chdir(cwd)
    code = result.code if isinstance(result, SystemExit) else result
    assert code in (0, 1, 2), (argv, code, err[-500:])
    if code:
        assert "error" in err, (argv, err[-500:])
    assert "Traceback" not in out + err, (argv, err[-2000:])


def test_cli_main_property_covers_success_and_failure(cli_sandbox):
    """The runnable generator is not vacuous: one of its argv lists succeeds, another fails cleanly."""
    cwd = os.getcwd()
    os.chdir(cli_sandbox)
    try:
        ok, _, _ = _run_quietly(lambda: main(["sample", "--model", "tiny-core", "--steps", "1", "--prompt", "",
                                              "--out", "covers.png"]))
        bad, _, err = _run_quietly(lambda: main(["arena", "status", "--campaign", "prompts.txt"]))
    finally:
        os.chdir(cwd)
    assert ok == 0 and (cli_sandbox / "covers.png").is_file()
    assert bad == 2 and "no arena campaign" in err
