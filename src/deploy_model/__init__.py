"""deploy_model: the stages behind the /deploy-model command (see DESIGN.md)."""

__version__ = "0.1.0"
