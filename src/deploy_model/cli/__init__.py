"""The `deploy-model` CLI: a typer app (base), its verbs by group (stages, agent, cluster), and main."""
