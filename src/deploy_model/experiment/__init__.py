"""A/B experiments after go-live: ground truth, quality per arm, the statistics and their verdict."""
