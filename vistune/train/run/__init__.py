"""A run before its first step: the config, its `auto` switches made concrete, the machine checked, the model and
data built, and the dry run that says all of it without loading a weight."""

from vistune.train.run.config import ConfigError, RunConfig, load_config

__all__ = ["ConfigError", "RunConfig", "load_config"]
