"""Reusing SPADE's map terms across a sampling chain (``diffusion.spade_terms``): exact, and only ever
computed again for another map or under gradients."""

from __future__ import annotations

import pytest
import torch

from EchoSynthLib.diffusion.spade_terms import reused_map_terms


def _network() -> torch.nn.Module:
    from monai.networks.nets import SPADEDiffusionModelUNet

    torch.manual_seed(0)
    return SPADEDiffusionModelUNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        label_nc=3,
        channels=(8, 16),
        attention_levels=(False, True),
        num_res_blocks=1,
        norm_num_groups=8,
        num_head_channels=16,
        spade_intermediate_channels=8,
    ).eval()


def _map(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    classes = torch.randint(0, 3, (2, 16, 16), generator=generator)
    return torch.nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).float()


def _counted(network: torch.nn.Module) -> list[int]:
    """A list that grows by one each time any SPADE block computes its map terms."""
    from monai.networks.blocks.spade_norm import SPADE

    calls: list[int] = []
    for block in network.modules():
        if isinstance(block, SPADE):
            block.mlp_shared.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_the_terms_are_computed_once_per_map_and_the_output_is_exact():
    network = _network()
    calls = _counted(network)
    x, t, seg, other = torch.randn(2, 1, 16, 16), torch.tensor([3, 7]), _map(0), _map(1)
    with torch.no_grad():
        plain = [network(x * k, t, seg) for k in (1, 2)]
        plain_other = network(x, t, other)
        per_call = len(calls) // 3
        assert per_call > 0
        calls.clear()
        with reused_map_terms(network):
            cached = [network(x * k, t, seg) for k in (1, 2)]
            assert len(calls) == per_call  # the second step reused the first's terms
            again = network(x, t, seg.clone())  # the same map, rebuilt (classifier-free guidance does)
            assert len(calls) == per_call
            switched = network(x, t, other)  # another map: computed afresh, not the stale terms
            assert len(calls) == 2 * per_call
    for got, expected in zip(cached, plain, strict=True):
        assert torch.equal(got, expected)
    assert torch.equal(again, plain[0]) and torch.equal(switched, plain_other)
    # Outside the block the network is MONAI's own again.
    calls.clear()
    with torch.no_grad():
        network(x, t, seg), network(x, t, seg)
    assert len(calls) == 2 * per_call
    assert not any("forward" in m.__dict__ for m in network.modules())


def test_with_gradients_nothing_is_reused_and_gradients_reach_the_map_layers():
    network = _network().train()
    calls = _counted(network)
    x, t, seg = torch.randn(2, 1, 16, 16), torch.tensor([3, 7]), _map(0)
    with reused_map_terms(network):
        network(x, t, seg)
        first = len(calls)
        loss = network(x, t, seg).square().mean()
        assert len(calls) == 2 * first
        loss.backward()
    from monai.networks.blocks.spade_norm import SPADE

    block = next(m for m in network.modules() if isinstance(m, SPADE))
    assert block.mlp_gamma.conv.weight.grad is not None


def test_nested_blocks_leave_the_network_patched_until_the_outer_one_ends():
    network = _network()
    calls = _counted(network)
    x, t, seg = torch.randn(2, 1, 16, 16), torch.tensor([3, 7]), _map(0)
    with torch.no_grad(), reused_map_terms(network):
        with reused_map_terms(network):
            network(x, t, seg)
        first = len(calls)
        network(x, t, seg)
        assert len(calls) == first


def _spade_blocks(network: torch.nn.Module) -> int:
    from monai.networks.blocks.spade_norm import SPADE

    return sum(isinstance(m, SPADE) for m in network.modules())


def _plain(monkeypatch, module) -> None:
    """``module`` samples without reusing the terms (MONAI's own SPADE on every step)."""
    import contextlib

    monkeypatch.setattr(module, "reused_map_terms", lambda network: contextlib.nullcontext())


def test_the_four_step_chain_computes_the_terms_once_and_gives_the_same_image(
    tiny_adversarial, phantom_2d, monkeypatch
):
    from EchoSynthLib.models.adversarial import pipeline

    model = pipeline.AdversarialModel.load(tiny_adversarial.run / "model", "cpu")
    calls = _counted(model.generator)
    cached = model.synthesize(phantom_2d.labels, n=2, seed=5)
    assert len(calls) == _spade_blocks(model.generator)  # one computation per block for 4 steps
    _plain(monkeypatch, pipeline)
    calls.clear()
    plain = model.synthesize(phantom_2d.labels, n=2, seed=5)
    assert len(calls) == model.config.steps * _spade_blocks(model.generator)
    for got, expected in zip(cached, plain, strict=True):
        assert (got.array == expected.array).all()


def test_the_sdm_samplers_compute_the_terms_once_with_and_without_guidance(monkeypatch):
    from EchoSynthLib.diffusion import samplers
    from EchoSynthLib.diffusion.gaussian import GaussianDiffusion

    network = _network()
    network.out = torch.nn.Sequential(network.out, torch.nn.Conv2d(1, 2, 1))  # noise and variance channels
    calls = _counted(network)
    seg = _map(0)
    for guidance in (1.0, 2.0):
        calls.clear()
        cached = samplers.denoise(network, seg, GaussianDiffusion(), steps=5, seed=1, guidance_scale=guidance)
        assert len(calls) == _spade_blocks(network)
        with monkeypatch.context() as patched:
            _plain(patched, samplers)
            plain = samplers.denoise(
                network, seg, GaussianDiffusion(), steps=5, seed=1, guidance_scale=guidance
            )
        assert torch.equal(cached, plain)
