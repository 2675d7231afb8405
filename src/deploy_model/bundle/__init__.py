"""The bundle: render every artifact from the spec (render, lock, alerts), own its files, and prove it (validate, checks)."""
