"""The IR: `syntax` (as written) and `model` (resolved), plus the vocabulary."""
