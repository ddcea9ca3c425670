"""Reliability and security (issue 11): untrusted model files never run code, corrupted ones fail with an error
naming the file, bad parameters say what to change, concurrent sessions get their own results, a `kill -9` of
the arena mid-voting loses no confirmed vote, and the app is private unless deliberately exposed."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from studio.cli import main
from studio.errors import ConfigError, ModelFormatError, ModelNotFoundError
from studio.hub import WEIGHTS_NAME, load_model, resolve_model

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `ui/` sits next to `studio/`
    sys.path.insert(0, str(REPO))


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`studio ARGV` in-process: (exit code, stdout, stderr); argparse's SystemExit becomes its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def models_root(tmp_path, tiny_core, monkeypatch) -> Path:
    """$STUDIO_MODELS with one trained-looking tiny model, `tiny-core`."""
    tiny_core.register_to_config(training_phase="core")
    tiny_core.save_pretrained(tmp_path / "models" / "tiny-core")
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "models"))
    return tmp_path / "models"


# ======================================================================================= untrusted files
class Payload:
    """Unpickling this opens (creates) `marker`: stands in for any code a hostile pickle would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_pickle_bomb(path: Path, marker: Path) -> Path:
    torch.save({"conv.weight": torch.zeros(1), "payload": Payload(marker)}, path)
    return path


def test_the_pickle_bomb_really_runs_code_when_unpickled(tmp_path):
    """The bait is real: a plain unpickle creates the marker (so the refusals below are meaningful)."""
    marker = tmp_path / "ran"
    bomb = write_pickle_bomb(tmp_path / "bomb.bin", marker)
    torch.load(bomb, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "diffusion_pytorch_model.bin", "pickle-as-safetensors"])
def test_pickle_weights_are_refused_and_never_run(models_root, tmp_path, layout):
    folder = models_root / "tiny-core"
    marker = tmp_path / "ran"
    (folder / WEIGHTS_NAME).unlink()
    target = folder / (WEIGHTS_NAME if layout == "pickle-as-safetensors" else layout)
    write_pickle_bomb(target, marker)

    with pytest.raises(ModelFormatError, match=WEIGHTS_NAME):  # the library, by path
        load_model(folder)
    from studio_ui.models import ModelCache

    cache = ModelCache(size=2)
    with pytest.raises(ModelFormatError, match=WEIGHTS_NAME):  # the app, by name
        cache.get("tiny-core")
    assert cache.loaded() == []  # nothing half-loaded is kept
    code, _, err = run_cli(["sample", "--model", "tiny-core", "--prompt", "x", "--steps", "1",
                            "--out", str(tmp_path / "x.png")])
    assert code == 2 and WEIGHTS_NAME in err and "Traceback" not in err
    assert not marker.exists(), "unpickling ran code"
    assert not (tmp_path / "x.png").exists()


def test_a_pickle_next_to_safetensors_is_ignored(models_root, tmp_path):
    marker = tmp_path / "ran"
    write_pickle_bomb(models_root / "tiny-core" / "diffusion_pytorch_model.bin", marker)
    write_pickle_bomb(models_root / "tiny-core" / "pytorch_model.bin", marker)
    model = load_model("tiny-core")
    assert model.name == "tiny-core"
    assert not marker.exists()


def test_a_pickled_checkpoint_is_not_executed(tmp_path):
    """`studio train resume` reads optimizer/RNG state with torch.load(weights_only=True): a hostile file fails
    to load instead of running."""
    from safetensors.torch import save_file

    from studio.train import checkpoint

    ckpt, marker = tmp_path / "step-00000010", tmp_path / "ran"
    ckpt.mkdir()
    (ckpt / "state.json").write_text(json.dumps({"step": 10}))
    save_file({"w": torch.zeros(2)}, str(ckpt / "model.safetensors"))
    write_pickle_bomb(ckpt / "optimizer.pt", marker)
    write_pickle_bomb(ckpt / "rng-0.pt", marker)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl|unsupported"):
        checkpoint.load(ckpt)
    assert not marker.exists()


def _python_sources():
    for top in ("studio", "ui", "scripts"):
        yield from sorted((REPO / top).rglob("*.py"))


def test_no_unsafe_deserialisation_in_the_code():
    """Every torch.load passes weights_only=True; nothing imports pickle/dill/joblib or sets allow_pickle=True."""
    problems = []
    for path in _python_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle") for n in names):
                    problems.append(f"{where}: imports a pickle library")
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                kw = {k.arg: k.value for k in node.keywords}
                if func == "torch.load" or func.endswith(".torch.load"):
                    value = kw.get("weights_only")
                    if not (isinstance(value, ast.Constant) and value.value is True):
                        problems.append(f"{where}: torch.load without weights_only=True")
                if "allow_pickle" in kw and not (isinstance(kw["allow_pickle"], ast.Constant)
                                                 and kw["allow_pickle"].value is False):
                    problems.append(f"{where}: allow_pickle is not False")
    assert not problems, problems


# ======================================================================================= corrupted files
def test_shipped_models_load_completely(monkeypatch):
    """Every shipped model's weights match its config exactly (no missing, unused or reshaped tensor)."""
    from studio.paths import SHIPPED_MODELS_DIR

    monkeypatch.setenv("STUDIO_MODELS", "")
    shipped = sorted(p.name for p in SHIPPED_MODELS_DIR.iterdir() if (p / "config.json").is_file())
    if not shipped:
        pytest.skip("no shipped models in this checkout")
    for name in shipped:
        assert load_model(name).name == name


def test_truncated_weights_name_the_file_and_nothing_is_cached(models_root):
    from studio_ui.models import ModelCache

    weights = models_root / "tiny-core" / WEIGHTS_NAME
    good = weights.read_bytes()
    for cut in (0, 8, 100, len(good) // 2, len(good) - 1):
        weights.write_bytes(good[:cut])
        cache = ModelCache(size=2)
        with pytest.raises(ModelFormatError, match=str(weights)):
            cache.get("tiny-core")
        assert cache.loaded() == []
    weights.write_bytes(good)  # repaired: loads again
    assert ModelCache(size=2).get("tiny-core").name == "tiny-core"


def test_mismatched_shapes_name_the_file(models_root):
    config_path = models_root / "tiny-core" / "config.json"
    config = json.loads(config_path.read_text())
    config["width"] = config["width"] * 2  # weights saved at the old width
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match=WEIGHTS_NAME):
        load_model("tiny-core")


def test_config_of_another_architecture(models_root, tiny_grown):
    """A GrownUViT config over ShallowUViT weights, and a diffusers UNet config: clear errors, nothing loaded."""
    folder = models_root / "tiny-core"
    tiny_grown.register_to_config(training_phase="grow")
    tiny_grown.save_config(folder)  # overwrites config.json; the ShallowUViT weights stay
    with pytest.raises(ModelFormatError, match=WEIGHTS_NAME):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ModelFormatError, match="not a studio model"):
        load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="config.json"):
        load_model(folder)


def test_an_interrupted_export_keeps_the_previous_file(campaign_dir, tmp_path, monkeypatch):
    import studio.arena.store as store
    from studio.arena import Campaign

    campaign = Campaign.open(campaign_dir)
    for rater in ("ann", "bob"):
        campaign.vote(campaign.next_battle(rater).token, "left")
    out = tmp_path / "votes.jsonl"
    campaign.export(out)
    before = out.read_bytes()
    campaign.vote(campaign.next_battle("cyd").token, "tie")
    real, calls = store.VoteRecord.to_dict, []

    def interrupted(self):  # Ctrl+C while the second record is written
        calls.append(self)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(store.VoteRecord, "to_dict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        campaign.export(out)
    assert out.read_bytes() == before and len(before.splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".votes")) == []  # no temp left
    monkeypatch.setattr(store.VoteRecord, "to_dict", real)
    campaign.export(out)
    assert len(out.read_bytes().splitlines()) == 3
    campaign.close()


# ======================================================================================= bad parameters
TRAVERSAL_NAMES = ["../../etc", "..", ".", "/etc/passwd", "tiny-core/../tiny-core", "..\\..\\windows", "~root",
                   "tiny-core\x00", "", " ", "a" * 300]


@pytest.mark.parametrize("name", TRAVERSAL_NAMES)
def test_app_model_names_never_reach_the_file_system(models_root, name):
    with pytest.raises(ModelNotFoundError):
        resolve_model(name, allow_paths=False)
    assert resolve_model("tiny-core", allow_paths=False) == models_root / "tiny-core"


def _parse(**changes):
    from studio_ui.generate import parse_request

    values = dict(model="tiny-core", prompt="a red star on a white background", sampler="dpm++", steps=10,
                  guidance=3.0, seed=0, images=1, max_steps=100) | changes
    return parse_request(**values)


@pytest.mark.parametrize("changes, message", [
    (dict(steps=0), "steps must be between 1 and 100"),
    (dict(steps=101), "steps must be between 1 and 100"),
    (dict(steps="many"), "must be numbers"),
    (dict(steps=float("inf")), "must be numbers"),
    (dict(guidance=-1), "guidance must be between"),
    (dict(guidance=51), "guidance must be between"),
    (dict(guidance=float("nan")), "guidance must be between"),
    (dict(seed=-2), "seed must be between"),
    (dict(seed=2**63), "seed must be between"),
    (dict(seed=float("nan")), "must be numbers"),
    (dict(seed="abc"), "must be numbers"),
    (dict(images=0), "number of images must be between 1 and 4"),
    (dict(images=5), "number of images must be between 1 and 4"),
    (dict(sampler="magic"), "unknown sampler 'magic'"),
    (dict(sampler=None), "unknown sampler"),
    (dict(model=None), "no model selected"),
])
def test_app_bad_parameter_matrix(changes, message):
    with pytest.raises(ConfigError, match=message):
        _parse(**changes)


def test_app_prompt_notes(text_encoder):
    settings, notes = _parse(prompt="")
    assert settings.prompt == "" and any("unconditionally" in n for n in notes)
    settings, notes = _parse(prompt="   ")
    assert settings.prompt == "" and any("unconditionally" in n for n in notes)
    settings, notes = _parse(prompt=" ".join(["star"] * 400))
    assert any("truncated" in n for n in notes)
    settings, notes = _parse(prompt="x" * 10_000)
    assert len(settings.prompt) == 2000 and any("cut" in n for n in notes)
    settings, notes = _parse(seed=-1)
    assert 0 <= settings.seed and any("Random seed" in n for n in notes)


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps: must be between 1 and 1000"),
    (["--steps", "1001"], "--steps: must be between 1 and 1000"),
    (["--guidance", "-1"], "--guidance: must be between 0 and 50"),
    (["--guidance", "nan"], "--guidance: must be between 0 and 50"),
    (["--seed", "-1"], "--seed: must be between 0 and"),
    (["--seed", str(2**63)], "--seed: must be between 0 and"),
    (["--batch-size", "0"], "--batch-size: must be between 1 and 64"),
    (["--batch-size", "65"], "--batch-size: must be between 1 and 64"),
    (["--sampler", "magic"], "invalid choice: 'magic'"),
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--model", "../../etc"], "unknown model '../../etc'"),
    (["--guidance-interval", "4", "-6"], "low <= high"),
])
def test_cli_bad_parameter_matrix(models_root, tmp_path, extra, message):
    code, _, err = run_cli(["sample", "--model", "tiny-core", "--prompt", "x", "--steps", "1",
                            "--out", str(tmp_path / "x.png"), *extra])
    assert code == 2 and message in err, err
    assert "Traceback" not in err and not (tmp_path / "x.png").exists()


def test_cli_prompt_notes_and_unwritable_output(models_root, tmp_path, text_encoder):
    code, _, err = run_cli(["sample", "--model", "tiny-core", "--prompt", "", "--steps", "1",
                            "--out", str(tmp_path / "empty.png")])
    assert code == 0 and "sampling unconditionally" in err and (tmp_path / "empty.png").is_file()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_cli(["sample", "--model", "tiny-core", "--prompt", " ".join(["star"] * 400),
                                "--steps", "1", "--out", str(tmp_path / "long.png")])
    assert code == 0 and any("truncated" in str(w.message) for w in caught)
    (tmp_path / "file").write_text("")
    code, _, err = run_cli(["sample", "--model", "tiny-core", "--prompt", "x", "--steps", "1",
                            "--out", str(tmp_path / "file" / "x.png")])  # a file where a folder should be
    assert code == 1 and "error" in err and "file" in err and "Traceback" not in err


# ======================================================================================= exposure
def test_loopback_is_only_a_literal_loopback_address():
    from studio_ui.app import is_loopback

    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "127.example.com", "localhost.example.com", ""):
        assert not is_loopback(host), host


@pytest.fixture
def campaign_dir(tmp_path) -> Path:
    from studio.arena.campaign import demo_campaign

    demo_campaign(tmp_path / "campaign", n_contenders=2, n_prompts=1, seeds=1).close()
    return tmp_path / "campaign"


SECRET = "hunter2-Zq9-unique-secret"


def test_exposed_arena_needs_the_password_and_it_is_never_printed(campaign_dir, models_root, monkeypatch, caplog):
    import studio_ui.app

    launched = []
    monkeypatch.setattr(studio_ui.app, "launch", lambda demo, **kw: launched.append(kw))
    monkeypatch.delenv("STUDIO_APP_PASSWORD", raising=False)
    argv = ["app", "--host", "0.0.0.0", "--port", "7999", "--arena", str(campaign_dir)]
    code, out, err = run_cli(argv)
    assert code == 2 and "needs a password" in err and "STUDIO_APP_PASSWORD" in err and not launched

    code, out, err = run_cli(["app", "--host", "127.0.0.1", "--port", "7999", "--arena", str(campaign_dir)])
    assert code == 0 and launched[-1]["host"] == "127.0.0.1" and launched[-1]["auth"] is None  # loopback: fine

    monkeypatch.setenv("STUDIO_APP_PASSWORD", SECRET)
    with caplog.at_level("DEBUG"):
        code, out, err = run_cli(argv)
    assert code == 0 and launched[-1]["auth"] == ("studio", SECRET) and launched[-1]["host"] == "0.0.0.0"
    assert "warning: binding 0.0.0.0" in err
    assert SECRET not in out + err + caplog.text


def test_launch_itself_refuses_an_exposed_arena_without_auth(tmp_path):
    from types import SimpleNamespace

    from studio_ui.app import ExposureError, launch

    demo = SimpleNamespace(studio_config=SimpleNamespace(outputs_dir=tmp_path, arena_dir=tmp_path))
    with pytest.raises(ExposureError, match="needs a password"):
        launch(demo, host="0.0.0.0", warm=False)  # refused before gradio is asked to serve anything


def test_password_protects_the_app_and_is_never_logged(models_root, tmp_path, capfd, caplog):
    """A real server on loopback with the password: no session without it, the API works with it, and the
    password appears in no output."""
    from gradio_client import Client

    from studio_ui.app import AppConfig, build_app, launch

    demo = build_app(AppConfig(outputs_dir=tmp_path / "outputs"))
    with caplog.at_level("DEBUG"):
        try:
            _, url, _ = launch(demo, port=None, auth=("studio", SECRET), prevent_thread_lock=True, quiet=True,
                               warm=False)
            with pytest.raises(Exception):
                Client(url, verbose=False).predict(api_name="/stop")
            with pytest.raises(Exception):
                Client(url, auth=("studio", "wrong"), verbose=False)
            assert "Nothing is running" in Client(url, auth=("studio", SECRET), verbose=False).predict(api_name="/stop")
        finally:
            demo.close()
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text


# ======================================================================================= arena: kill -9
VOTER = textwrap.dedent("""
    import sys, threading, random
    from studio.arena import Campaign, ArenaError

    campaign = Campaign.open(sys.argv[1])            # one shared Campaign, many request threads: as the app does
    lock = threading.Lock()

    def rater(r):
        rng = random.Random(r)
        while True:
            try:
                battle = campaign.next_battle(f"rater-{r}")
                reveal = campaign.vote(battle.token, rng.choice(["left", "right", "tie", "both_bad"]),
                                       rater=f"rater-{r}")
            except ArenaError:
                return
            with lock:  # the vote is committed: confirm it to the "client"
                print(f"CONFIRMED {reveal.vote_id} {battle.token} rater-{r} {reveal.choice}", flush=True)

    threads = [threading.Thread(target=rater, args=(r,)) for r in range(int(sys.argv[2]))]
    print("READY", flush=True)
    for t in threads: t.start()
    for t in threads: t.join()
    print("ALL DONE", flush=True)
""")


def test_kill_9_during_voting_loses_no_confirmed_vote(tmp_path):
    from studio.arena.campaign import demo_campaign

    directory = tmp_path / "campaign"
    demo_campaign(directory, n_contenders=4, n_prompts=6, seeds=2).close()  # 6 pairs x 12 = 72 battles
    script = tmp_path / "voter.py"
    script.write_text(VOTER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(script), str(directory), "8"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    confirmed: list[list[str]] = []
    try:
        for line in proc.stdout:  # kill as soon as 30 votes are confirmed, while 8 writers are mid-transaction;
            if line.startswith("CONFIRMED"):  # then read on to EOF: lines printed before the kill are confirmed
                confirmed.append(line.split())
                if len(confirmed) == 30:
                    os.kill(proc.pid, signal.SIGKILL)
            assert "ALL DONE" not in line, "every rater finished before the kill: make the campaign bigger"
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    assert len(confirmed) >= 30

    with sqlite3.connect(directory / "arena.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        stored = {row[0]: row[1:] for row in db.execute(
            "SELECT v.id, i.token, r.name, v.choice FROM votes v JOIN impressions i ON i.id = v.impression_id"
            " JOIN raters r ON r.id = v.rater_id")}
        duplicates = db.execute("SELECT rater_id, battle_id FROM votes GROUP BY 1, 2 HAVING COUNT(*) > 1").fetchall()
        not_marked = db.execute("SELECT COUNT(*) FROM votes v JOIN impressions i ON i.id = v.impression_id"
                                " WHERE i.status != 'voted'").fetchone()[0]
    for _, vote_id, token, rater, choice in confirmed:
        assert stored.get(int(vote_id)) == (token, rater, choice), f"confirmed vote {vote_id} was lost"
    assert not duplicates and not_marked == 0
    assert len(stored) >= len(confirmed)  # a vote may commit just before the kill, unconfirmed: never fewer

    from studio.arena import Campaign  # the store opens and takes votes again after the crash

    campaign = Campaign.open(directory)
    battle = campaign.next_battle("after-the-crash")
    assert campaign.vote(battle.token, "tie").vote_id > max(stored)
    campaign.close()


# ======================================================================================= concurrency
def _load_app_module():
    spec = importlib.util.spec_from_file_location("load_app", REPO / "scripts" / "load_app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_concurrent_generation_each_session_gets_its_own_result(tmp_path, monkeypatch):
    """scripts/load_app.py with 3 simultaneous sessions (app concurrency 2, so one waits in the queue): no errors,
    and every session's PNG has its own seed, prompt and pixels (equal to the same request made alone)."""
    load_app = _load_app_module()
    monkeypatch.setenv("STUDIO_MODELS", "")
    with load_app.app_in_process(load_app.make_tiny_models(tmp_path / "models"), concurrency=2) as url:
        report = load_app.run_load(url, sessions=3, model="tiny-grown", steps=3, time_limit_s=600, app_concurrency=2)
    assert report.errors == 0, [j.error for j in report.results]
    assert report.completed == 3 and report.isolation_checked == 3 and report.isolation_failures == 0
    assert len({j.seed for j in report.results}) == 3
    assert report.page_latency_p50_s is not None  # the page answered while generations queued


def test_load_script_only_targets_loopback():
    load_app = _load_app_module()
    with pytest.raises(SystemExit, match="loopback"):
        load_app.run_load("http://192.168.1.20:7860", sessions=1, model="m", steps=1)
    with pytest.raises(SystemExit, match="between 1 and 64"):
        load_app.run_load("http://127.0.0.1:9", sessions=65, model="m", steps=1)
