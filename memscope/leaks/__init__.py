"""Leak hunting in process trees: type census from outside, agent-side site growth, the
sampler hook that collects both, and the recording tables that keep them."""
