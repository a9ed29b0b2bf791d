"""Back-patching on a tiny transformer trained on a synthetic two-hop task (Biran et al. 2024)."""
