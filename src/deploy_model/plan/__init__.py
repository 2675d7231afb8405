"""The plan: answers and the DeploymentSpec, the decision tree (planner), releases, bounds, cluster fit, sibling plugins."""
