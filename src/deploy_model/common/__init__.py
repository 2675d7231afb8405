"""Shared helpers of every stage: refusals (errors), stage files (files), strict YAML, the directory lock."""
