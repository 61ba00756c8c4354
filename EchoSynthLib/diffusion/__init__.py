"""Diffusion processes and samplers, shared by the diffusion families (torch; import the submodules
explicitly: this package file itself is torch-free and only names the samplers)."""

# The samplers ``diffusion.samplers.sample`` offers; the default first.
SAMPLERS = ("dpm++sde", "dpm++", "ddim", "ddpm")
DEFAULT_SAMPLER = SAMPLERS[0]
