import pytest

from seqtrack_mlflow.config import ConfigError, DataConfig, ModelConfig, build_settings, preset


def test_official_presets_match_reference_table() -> None:
    expect = {
        "b256": (768, 12, 256, 16),
        "b384": (768, 12, 384, 8),
        "l256": (1024, 24, 256, 8),
        "l384": (1024, 24, 384, 8),
    }
    for name, (dim, depth, size, batch) in expect.items():
        model, train = preset(name)
        assert (model.encoder_dim, model.encoder_depth, model.search_size, train.batch_size) == (
            dim,
            depth,
            size,
            batch,
        )
        assert model.template_size == model.search_size and model.patch_size == 16 and model.bins == 4000
        assert model.num_tokens == 3 * (size // 16) ** 2  # 768 or 1728 as in the official configs
        assert (train.lr, train.encoder_lr_mult, train.weight_decay, train.lr_drop_epoch) == (
            1e-4,
            0.1,
            1e-4,
            400,
        )
        assert (train.epochs, train.samples_per_epoch, train.grad_clip) == (500, 60000, 0.1)


def test_vocabulary_tokens() -> None:
    cfg = ModelConfig()
    assert (cfg.end_token, cfg.start_token, cfg.vocab_size) == (4000, 4001, 4002)


def test_patch_size_must_divide_crops() -> None:
    with pytest.raises(ConfigError, match="patch_size 3 does not divide template_size 64"):
        build_settings("tiny", {"patch_size": 3}, {}, DataConfig())
    s = build_settings("tiny", {"patch_size": 1, "search_size": 16, "template_size": 16}, {}, DataConfig())
    assert s.model.num_tokens == 3 * 16 * 16


def test_unset_means_preset_value_and_bad_values_are_refused() -> None:
    s = build_settings("tiny", {"search_size": None}, {"epochs": None, "lr": None, "seed": 8}, DataConfig())
    tiny_model, tiny_train = preset("tiny")
    assert s.model.search_size == tiny_model.search_size and s.train.epochs == tiny_train.epochs
    assert s.train.seed == 8
    with pytest.raises(ConfigError, match="epochs=-2"):
        build_settings("tiny", {}, {"epochs": -2}, DataConfig())
    with pytest.raises(ConfigError, match="unknown preset 'b128'.*tiny"):
        build_settings("b128", {}, {}, DataConfig())


@pytest.mark.parametrize(
    ("model", "train", "message"),
    [
        ({"patch_size": 0}, {}, "patch_size=0 is invalid"),
        ({}, {"log_every": 0}, "log_every=0 is invalid"),
        ({}, {"epochs": 0}, "epochs=0 is invalid"),
        ({"search_size": 0}, {}, "search_size=0 is invalid"),
        ({}, {"lr": 0.0}, "lr=0.0 is invalid"),
    ],
)
def test_an_explicit_zero_is_refused_not_read_as_unset(model, train, message) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        build_settings("tiny", model, train, DataConfig())
    assert "\n" not in str(err.value)


def test_a_preset_may_set_any_setting_and_an_explicit_value_wins(monkeypatch) -> None:
    from seqtrack_mlflow import config

    model, train = config.PRESETS["tiny"]
    monkeypatch.setitem(
        config.PRESETS, "tiny8", ({**model, "patch_size": 8}, {**train, "log_every": 20, "device": "cpu"})
    )
    s = build_settings("tiny8", {}, {}, DataConfig())
    assert (s.model.patch_size, s.train.log_every, s.train.device) == (8, 20, "cpu")
    s = build_settings("tiny8", {"patch_size": 16}, {"log_every": 50}, DataConfig())
    assert (s.model.patch_size, s.train.log_every) == (16, 50)


def test_cli_leaves_unset_settings_to_the_preset(monkeypatch) -> None:
    from click.testing import CliRunner

    from seqtrack_mlflow import cli, config

    model, train = config.PRESETS["tiny"]
    monkeypatch.setitem(config.PRESETS, "tiny8", ({**model, "patch_size": 8}, train))
    seen = {}

    @cli.main.command("probe")
    @cli.step_options("train")
    def probe(**kw):
        seen["settings"] = cli.train_settings({**kw, "preset": "tiny8"})

    try:
        assert CliRunner().invoke(cli.main, ["probe"]).exit_code == 0
        assert seen["settings"].model.patch_size == 8  # no CLI default overrides the preset
        assert CliRunner().invoke(cli.main, ["probe", "--patch_size", "4"]).exit_code == 0
        assert seen["settings"].model.patch_size == 4
    finally:
        cli.main.commands.pop("probe")


def test_params_cover_every_setting_once() -> None:
    s = build_settings("tiny", {}, {"seed": 8}, DataConfig())
    params = s.params()
    assert params["seed"] == 8 and params["patch_size"] == 16 and params["num_tokens"] == 96
    assert {"lr", "epochs", "batch_size", "center_jitter", "classes", "source", "encoder_dim"} <= set(params)


def test_settings_round_trip() -> None:
    from seqtrack_mlflow.config import TrainSettings

    s = build_settings("tiny", {"patch_size": 8}, {"seed": 3}, DataConfig(source="synthetic"))
    assert TrainSettings.from_dict(s.to_dict()) == s


def test_resume_sweep_and_env_rules_are_declared_on_the_settings():
    from seqtrack_mlflow.config import declared_settings, resume_overridable

    by_name = {s.name: s for s in declared_settings()}
    # A resume may change the schedule and where/how it runs, never the model, data or optimisation.
    assert set(resume_overridable()) == {
        "epochs", "lr_drop_epoch", "lr_gamma", "device", "workers", "log_every", "system_metrics", "amp",
        "console", "keep_checkpoints", "lasot_root", "cache_dir", "got10k_root", "trackingnet_root",
        "coco_root", "lasot_ext_root",
    }  # fmt: skip
    assert not by_name["lr"].resume and not by_name["patch_size"].resume
    assert not by_name["workers"].sweep and by_name["lr"].sweep
    assert (by_name["lasot_root"].env, by_name["cache_dir"].env) == ("LASOT_ROOT", "SEQTRACK_CACHE")


def test_resumed_settings_keep_the_checkpoint_but_take_overridable_and_env(monkeypatch):
    from seqtrack_mlflow.config import DataConfig, build_settings, resumed_settings

    saved = build_settings("tiny", {}, {"epochs": 2}, DataConfig(lasot_root="/elsewhere/LaSOT"))
    monkeypatch.setenv("LASOT_ROOT", "/here/LaSOT")
    got = resumed_settings(saved, 1, {"epochs": 4, "workers": 2}, "run x")
    assert (got.train.epochs, got.train.workers) == (4, 2)
    assert got.data.lasot_root is None  # this machine's variable wins over the recorded folder
    with pytest.raises(ConfigError, match=r"lr=0.1 \(checkpoint: 0.0005\)"):
        resumed_settings(saved, 1, {"lr": 0.1}, "run x")
    with pytest.raises(ConfigError, match="nothing to train"):
        resumed_settings(saved, 2, {}, "run x")


def test_each_settings_class_validates_its_declared_checks():
    from seqtrack_mlflow.config import DataConfig, SweepConfig, TrainConfig

    with pytest.raises(ConfigError, match="synthetic_sequences=21 is invalid"):
        DataConfig(synthetic_sequences=21).validate()
    with pytest.raises(ConfigError, match="synthetic_size='12x12' is too small"):
        DataConfig(synthetic_size="12x12").validate()
    with pytest.raises(ConfigError, match="study_name='' is invalid"):
        SweepConfig(study_name="").validate()
    with pytest.raises(ConfigError, match="log_every=0 is invalid"):
        TrainConfig(log_every=0).validate()
    DataConfig().validate()


def test_help_documents_the_environment_variables():
    from click.testing import CliRunner

    from seqtrack_mlflow.cli import main

    out = CliRunner().invoke(main, ["train", "--help"]).output
    for var in ("LASOT_ROOT", "SEQTRACK_CACHE", "SEQTRACK_JPEG_DECODER"):
        assert var in out


def test_given_means_set_and_not_the_default_in_every_command():
    from seqtrack_mlflow.cli import given_settings
    from seqtrack_mlflow.config import step_settings

    kw = {s.name: s.default_in("sweep") for s in step_settings("sweep")}
    kw.update(trials=3, lr=1e-3)  # `mlflow run` passes every default too: only these two were given
    assert given_settings(kw, "sweep") == {"trials": 3, "lr": 1e-3}


def test_each_commands_help_shows_its_own_context_only():
    """A setting's help in one command never speaks of another command (`(sweep: ...)`, `(evaluate: ...)`)."""
    import re

    from seqtrack_mlflow.config import STEPS, step_settings

    for step in STEPS:
        for s in step_settings(step):
            shown = s.help_in(step)
            assert not re.search(r"\((main|select_data|train|evaluate|sweep|track)\b[^)]*:", shown), (
                step,
                shown,
            )
    helps = {step: {s.name: s.help_in(step) for s in step_settings(step)} for step in STEPS}
    assert "official file" not in helps["train"]["preset"] and "official file" in helps["evaluate"]["preset"]
    assert "trials" not in helps["select_data"]["seed"] and "trials" in helps["sweep"]["seed"]
    assert "video" in helps["track"]["max_frames"] and "video" not in helps["evaluate"]["max_frames"]
    assert "best trial" in helps["sweep"]["model_name"] and "best trial" not in helps["main"]["model_name"]


def test_train_help_shows_trains_own_preset_text():
    from click.testing import CliRunner

    from seqtrack_mlflow.cli import main

    out = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    assert "--preset" in out and "official file" not in out and "(evaluate" not in out
    out = " ".join(CliRunner().invoke(main, ["select-data", "--help"]).output.split())
    assert "(sweep" not in out and "trials" not in out
