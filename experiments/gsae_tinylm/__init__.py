"""Gradient TopK SAE vs TopK SAE spliced into a causal LM, at equal L0 (Olmo et al., g-SAE)."""
