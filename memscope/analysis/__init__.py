"""Pure analyses of recordings (summaries, COW advice)."""
