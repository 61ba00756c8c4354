"""Diffusion processes and samplers, shared by the diffusion families (torch; import the submodules
explicitly: this package file itself is torch-free and only names the samplers)."""

# Samplers of noise-predicting models (``diffusion.samplers.solve``), the default first.
EPSILON_SAMPLERS = ("dpm++sde", "dpm++", "ddim")
# Every sampler name an option may take: the above, the semantic diffusion model's learned-variance
# ancestral sampler, and the Euler integrator of rectified-flow models.
SAMPLERS = (*EPSILON_SAMPLERS, "ddpm", "rflow")
SDM_SAMPLERS = (*EPSILON_SAMPLERS, "ddpm")
# The samplers that run on diffusers' DPM-Solver++ scheduler (the only import of diffusers).
DIFFUSERS_SAMPLERS = ("dpm++", "dpm++sde")
DEFAULT_SAMPLER = SAMPLERS[0]
