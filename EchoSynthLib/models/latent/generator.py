"""The label-conditioned latent model as a ``sampling.generators`` Generator (``synthesize``, the worker,
the Slicer panel): 2D models take a plane of a 3D map, 3D models the whole map."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from EchoSynthLib.data.volume import Volume
from EchoSynthLib.models.latent.pipeline import LatentModel
from EchoSynthLib.sampling.generators import GeneratorSettings, ModelGenerator, Progress


@dataclass
class LatentGenerator(ModelGenerator):
    """A loaded label-conditioned latent model (``model``: a ``LatentModel``) with its sampling settings."""

    @classmethod
    def of(cls, model: LatentModel, settings: GeneratorSettings) -> LatentGenerator:
        """The generator for ``settings``, checked (the sampler as ``LatentModel.sampler_for`` picks it)."""
        sampler = model.sampler_for(settings.sampler)
        model.check_sampling(sampler, settings.steps, settings.guidance_scale, settings.strength)
        return cls(
            model,
            settings.steps,
            sampler,
            settings.guidance_scale,
            settings.plane,
            settings.slice_index,
            strength=model.start_strength(settings.strength),
        )

    def __post_init__(self) -> None:
        if not self.description:
            config = self.model.config
            what = f"{config.spatial_dims}D latent model {self.model.source.name} on {self.model.device}"
            self.description = f"{what}: {self.sampler}, {self.steps} steps"
            self.description += self.start_description(self.strength)

    def prepare(self, labels: Volume) -> Volume:
        """The map the model works on (see ``LatentModel.prepare``), checked."""
        return self.model.prepare(labels, self.plane, self.slice_index)

    def generate_many(
        self, maps: Sequence[Volume], counts: Sequence[int], seed: int, progress: Progress | None = None
    ) -> list[list[Volume]]:
        """The images of several prepared maps in batches across maps (``sampling.generators.
        generate_for_maps``; ``LatentModel.synthesize_maps``)."""
        start = {} if self.strength is None else {"strength": self.strength}
        return self.model.synthesize_maps(
            maps,
            counts,
            steps=self.steps,
            sampler=self.sampler,
            seed=seed,
            guidance_scale=self.guidance_scale,
            progress=None if progress is None else (lambda done, total: progress(done / total)),
            **start,
        )
