"""Settings: the one declaration of every setting, its rules, the presets, and validation.

Each setting is a field of a frozen dataclass (`settings.py`) declared with `declare.setting(...)`: its
type, default, help text, which entry points take it, what "unset" means there, and its rules (whether a
resume may change it, whether a sweep may search it, the environment variable that fills it, its check).
The click options (`cli.py`) and `MLproject` (`seqtrack-mlflow mlproject > MLproject`) are generated
from these fields, so a new setting is one declaration plus its use.

"Unset" is `None`, never a magic 0: in `main` and `train` an unset model or training setting takes the
preset's value (`preset=True`); in the steps listed in `inherit` an unset setting takes the value of the
run it builds on (the `select_data` run for data settings, the training run in `evaluate`).
"""

from seqtrack_mlflow.config.declare import (
    PRESET_STEPS,
    STEPS,
    ConfigError,
    Setting,
    env_name,
    env_value,
)
from seqtrack_mlflow.config.declared import (
    ENVIRONMENT,
    declared_settings,
    environment_help,
    step_settings,
)
from seqtrack_mlflow.config.presets import (
    PRESETS,
    TrainSettings,
    build_settings,
    from_dict,
    given_for,
    preset,
    replace,
    to_dict,
)
from seqtrack_mlflow.config.resume import resume_overridable, resumed_settings
from seqtrack_mlflow.config.settings import (
    SETTINGS_CLASSES,
    DataConfig,
    ModelConfig,
    RunConfig,
    SamplingConfig,
    SweepConfig,
    TrackerConfig,
    TrainConfig,
    parse_size,
)
from seqtrack_mlflow.config.video import VideoConfig, parse_box

__all__ = [
    "ENVIRONMENT",
    "PRESETS",
    "PRESET_STEPS",
    "SETTINGS_CLASSES",
    "STEPS",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "SamplingConfig",
    "Setting",
    "SweepConfig",
    "TrackerConfig",
    "TrainConfig",
    "TrainSettings",
    "VideoConfig",
    "build_settings",
    "declared_settings",
    "env_name",
    "env_value",
    "environment_help",
    "from_dict",
    "given_for",
    "parse_box",
    "parse_size",
    "preset",
    "replace",
    "resume_overridable",
    "resumed_settings",
    "step_settings",
    "to_dict",
]
