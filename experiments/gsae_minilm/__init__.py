"""Gradient TopK SAE vs plain TopK SAE on MiniLM, at equal L0 (Olmo et al., g-SAE)."""
