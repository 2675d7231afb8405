"""The cluster: the kube client, describing a cluster, server-side apply, the rollout driver and its gates, port-forward."""
