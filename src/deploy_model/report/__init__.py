"""The report: DEPLOYMENT.md (writer), its example requests, rollout and rollback commands, and the agent's summary."""
