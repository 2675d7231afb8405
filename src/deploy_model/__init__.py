"""deploy_model: the stages behind the /deploy-model command, in subpackages by stage (README, Layout)."""

__version__ = "0.1.0"
