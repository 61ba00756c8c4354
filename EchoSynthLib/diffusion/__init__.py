"""Diffusion processes and samplers (torch; import explicitly, the library root does not)."""
