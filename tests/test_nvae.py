"""NVAE (issue 6): DMOL, group KL, spectral regulariser, staged resume, bounds and sampling, on the CPU."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import pytest
import torch

from lib.common.files import read_jsonl
from lib.dists import Normal, dmol_component_log_prob, dmol_log_prob, dmol_sample, residual_normal
from lib.losses import kl_balance, kl_coeff_at, power_iteration
from lib.metrics import bits_per_dim, hierarchical_bounds
from lib.models import MODELS, NVAE, NVAEConfig, reestimate_bn
from lib.models.nvae import NVAE_TINY
from lib.train import TrainConfig, lr_at, train
from lib.workbook.training import load_run_model

LEVELS = torch.arange(256, dtype=torch.float64) / 255


def random_dmol_params(n_mix: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """DMOL parameters of one pixel (1, 10M, 1, 1): locations in [0, 1], scales 0.02-0.14, coefficients
    tanh(N(0, 1))."""
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(1, 10 * n_mix, 1, 1, generator=g, dtype=dtype)
    params[:, n_mix : 4 * n_mix] = torch.rand(1, 3 * n_mix, 1, 1, generator=g, dtype=dtype)
    params[:, 4 * n_mix : 7 * n_mix] = -4 + 2 * torch.rand(1, 3 * n_mix, 1, 1, generator=g, dtype=dtype)
    return params


def tiny_images(n: int = 8, seed: int = 0) -> torch.Tensor:
    """Smooth random uint8 images (upsampled noise), a stand-in for CIFAR-10."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 8, 8, generator=g)
    return (torch.nn.functional.interpolate(small, size=32, mode="bilinear") * 255).round().to(torch.uint8)


# --- DMOL ---------------------------------------------------------------------------------------------------------


def test_dmol_channel_probabilities_sum_to_one_without_coupling():
    n_mix = 3
    params = random_dmol_params(n_mix)
    x = LEVELS.view(256, 1, 1, 1).expand(256, 3, 1, 1)  # every level in every channel
    log_p = dmol_component_log_prob(
        x, params.expand(256, -1, -1, -1), n_mix, coupling=False
    )  # (256, M, 3, 1, 1)
    torch.testing.assert_close(
        log_p.exp().sum(0), torch.ones(n_mix, 3, 1, 1, dtype=torch.float64), atol=1e-9, rtol=0
    )


def test_dmol_all_colours_of_a_pixel_sum_to_one_with_coupling():
    """All 256^3 colours of one pixel (2 components, coupling on), float32 in chunks of 1M colours (~8 s)."""
    n_mix = 2
    params = random_dmol_params(n_mix, seed=1, dtype=torch.float32)
    assert params[:, 7 * n_mix :].tanh().abs().min() > 0.05  # the coupling is really switched on
    levels = LEVELS.float()
    red_green = torch.cartesian_prod(levels, levels)  # (65536, 2)
    total = 0.0
    for start in range(0, 256, 16):
        blue = levels[start : start + 16]
        x = torch.cat(
            [red_green.repeat_interleave(len(blue), 0), blue.repeat(len(red_green)).unsqueeze(1)], 1
        )
        log_p = dmol_log_prob(x.view(-1, 3, 1, 1), params.expand(len(x), -1, -1, -1), n_mix, coupling=True)
        total += log_p.double().exp().sum().item()
    assert abs(total - 1.0) < 1e-4


def test_dmol_edge_bins_take_the_tails():
    """P(0) = CDF(0.5 / 255) and P(255) = 1 - CDF(1 - 0.5 / 255), for one logistic per channel."""
    mean, log_scale = torch.tensor([0.01, 0.5, 0.97], dtype=torch.float64), math.log(0.05)
    params = torch.zeros(1, 10, 1, 1, dtype=torch.float64)
    params[0, 1:4, 0, 0], params[0, 4:7, 0, 0] = mean, log_scale
    scale = math.exp(log_scale)
    for level, expected in [
        (0, torch.sigmoid((0.5 / 255 - mean) / scale)),
        (255, 1 - torch.sigmoid((1 - 0.5 / 255 - mean) / scale)),
    ]:
        x = torch.full((1, 3, 1, 1), level / 255, dtype=torch.float64)
        per_channel = dmol_component_log_prob(x, params, 1, coupling=False).exp().flatten()
        torch.testing.assert_close(per_channel, expected, rtol=1e-9, atol=1e-12)
    edge = dmol_component_log_prob(torch.zeros(1, 3, 1, 1, dtype=torch.float64), params, 1, False).exp()[
        0, 0, 0
    ]
    inner = dmol_component_log_prob(torch.full((1, 3, 1, 1), 1 / 255, dtype=torch.float64), params, 1, False)
    assert edge.item() > inner.exp()[0, 0, 0].item()  # the edge bin holds the whole tail below 0


def test_dmol_sampling_histogram_matches_the_pmf():
    torch.manual_seed(0)
    n_mix, n = 3, 200_000
    params = random_dmol_params(n_mix, seed=2)
    draws = dmol_sample(params.float().expand(n, -1, -1, -1), n_mix, coupling=True)  # (n, 3, 1, 1)
    assert torch.equal(draws, (draws * 255).round() / 255)  # on the 256 levels
    counts = torch.bincount((draws[:, 0, 0, 0] * 255).round().long(), minlength=256).double()
    x = LEVELS.view(256, 1, 1, 1).expand(256, 3, 1, 1)
    per_channel = dmol_component_log_prob(x, params.expand(256, -1, -1, -1), n_mix, coupling=False)
    weights = torch.softmax(params[0, :n_mix, 0, 0], 0)
    expected = n * (weights[None] * per_channel[:, :, 0, 0, 0].exp()).sum(1)  # red is never coupled
    keep = expected > 5
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum().item()
    dof = int(keep.sum()) - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof), (chi2, dof)


# --- group KL ------------------------------------------------------------------------------------------------------


def test_group_kl_analytic_matches_monte_carlo():
    torch.manual_seed(0)
    p = Normal(
        torch.randn(2, 3, 2, 2, dtype=torch.float64), 0.3 * torch.randn(2, 3, 2, 2, dtype=torch.float64)
    )
    q = residual_normal(
        p,
        0.5 * torch.randn(2, 3, 2, 2, dtype=torch.float64),
        0.3 * torch.randn(2, 3, 2, 2, dtype=torch.float64),
    )
    z = q.mu + q.log_sigma.exp() * torch.randn(100_000, 2, 3, 2, 2, dtype=torch.float64)
    ratio = (q.log_prob(z) - p.log_prob(z)).sum(
        (1, 2, 3, 4)
    )  # (n,) per-draw log q - log p of the whole group
    analytic = q.kl(p).sum().item()
    assert abs(ratio.mean().item() - analytic) < 4 * ratio.std().item() / math.sqrt(len(ratio))


def test_residual_posterior_with_zero_residual_is_the_prior():
    p = Normal(torch.randn(4, 5), torch.randn(4, 5))
    q = residual_normal(p, torch.zeros(4, 5), torch.zeros(4, 5))
    assert torch.equal(q.mu, p.mu) and torch.equal(q.log_sigma, p.log_sigma)
    assert q.kl(p).abs().max().item() < 1e-6
    model = NVAE(NVAE_TINY).eval()  # zero-initialised residual heads: every group's q is its prior
    _, kl = model.elbo_terms(tiny_images(2).float() / 255)
    assert kl.abs().max().item() < 1e-4


def test_a_zero_residual_gives_q_equal_to_p_even_with_a_prior_of_order_one():
    """NVAE eq. 2 with the soft clamp: q = clamp(raw prior + residual), clamped once. Prior heads whose outputs are
    of order 1 and zero residual heads give q = p exactly and a KL of 0 (clamping p, adding the residual and
    clamping again gave group KLs of 1.6e2 to 6.2e6 nats per image here)."""
    torch.manual_seed(0)
    model = NVAE(NVAE_TINY).eval()
    with torch.no_grad():
        for head in model.net.prior_heads:
            head.conv.weight.normal_(0, 0.5)
            head.conv.bias.normal_(
                0, 2.0
            )  # raw means and log-scales of order 1, some beyond the clamp's bend
    _, groups = model.net(tiny_images(2).float() / 255)
    for q, p, _ in groups[1:]:
        assert p.mu.abs().max() > 1  # the clamp bends here: 5 tanh(5 tanh(m / 5) / 5) != 5 tanh(m / 5)
        assert torch.equal(q.mu, p.mu) and torch.equal(q.log_sigma, p.log_sigma)
    assert model.group_kl(groups).abs().max().item() < 1e-6


# --- objective pieces ---------------------------------------------------------------------------------------------


def test_power_iteration_matches_the_spectral_norm():
    torch.manual_seed(0)
    weight = torch.randn(5, 20, 30, dtype=torch.float64)
    u = torch.nn.functional.normalize(torch.randn(5, 20, dtype=torch.float64), dim=1)
    sigma, _ = power_iteration(weight, u, n_iter=200)
    torch.testing.assert_close(sigma.double(), torch.linalg.matrix_norm(weight, ord=2), rtol=1e-5, atol=0)


def test_model_spectral_sum_converges_with_persistent_vectors():
    torch.manual_seed(0)
    model = NVAE(NVAE_TINY).train()
    for _ in range(60):  # 10 iterations on the first call, then 1 per call, as during training
        total = model.spectral_sum()
    exact = sum(
        torch.linalg.matrix_norm(m.weight.reshape(m.weight.shape[0], -1), ord=2)
        for m in model.net.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    )
    assert abs(total.item() - exact.item()) / exact.item() < 1e-3


def test_kl_warmup_window_and_balancing():
    assert kl_coeff_at(0, 100, start=0) == pytest.approx(1e-4)
    assert kl_coeff_at(150, 100, start=100) == pytest.approx(0.5)  # a fresh window opening at step 100
    assert kl_coeff_at(500, 100) == 1.0
    kl, alpha = torch.rand(8, 4) * 10, torch.tensor([1.0, 1.0, 4.0, 4.0])
    total, gamma = kl_balance(kl, alpha, 1.0)
    torch.testing.assert_close(total, kl.sum(1))
    _, gamma = kl_balance(kl, alpha, 0.3)
    assert gamma.mean().item() == pytest.approx(1.0)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="n_mix"):
        NVAEConfig(n_mix=0)
    with pytest.raises(ValueError, match="likelihood"):
        NVAEConfig(likelihood="poisson")


# --- staged training ----------------------------------------------------------------------------------------------


def _train(folder, cfg: TrainConfig, model_cfg: NVAEConfig, **kwargs):
    torch.manual_seed(0)
    return train(
        NVAE(model_cfg),
        tiny_images(32),
        cfg,
        folder,
        device="cpu",
        use_wandb=False,
        model_config=asdict(model_cfg),
        **kwargs,
    )


def test_resuming_a_staged_run_continues_step_and_schedules(tmp_path):
    model_cfg = replace(NVAE_TINY, kl_warmup_steps=6)
    cfg = TrainConfig(
        steps=8,
        batch_size=8,
        lr=5e-3,
        optimizer="adamax",
        warmup_steps=3,
        schedule="cosine",
        log_every=1,
        ckpt_every=4,
        n_samples=0,
    )
    _train(tmp_path / "whole", cfg, model_cfg)
    _train(tmp_path / "split", cfg, model_cfg, stop_at=4)
    resumed = _train(tmp_path / "split", cfg, model_cfg)
    assert resumed.step == 8
    whole, split = read_jsonl(tmp_path / "whole/metrics.jsonl"), read_jsonl(tmp_path / "split/metrics.jsonl")
    assert [r["step"] for r in split] == list(range(1, 9))
    for a, b in zip(whole, split):
        assert a["lr"] == b["lr"] and a["kl_coeff"] == pytest.approx(b["kl_coeff"])
        expected = kl_coeff_at(a["step"] - 1, 6, model_cfg.kl_warmup_start, model_cfg.kl_min_coeff)
        assert a["kl_coeff"] == pytest.approx(expected)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)  # exact resume: same batches, same noise
    loaded, info = load_run_model(tmp_path / "whole", "nvae")
    assert info["step"] == 8 and not loaded.training
    # stage 3: continue from the checkpoint with a fresh optimizer, LR warm-up and KL warm-up window
    cont = _train(
        tmp_path / "continue",
        replace(cfg, steps=4),
        replace(model_cfg, kl_warmup_steps=4),
        init_from=tmp_path / "whole",
    )
    records = read_jsonl(tmp_path / "continue/metrics.jsonl")
    assert cont.step == 4 and records[0]["step"] == 1
    assert records[0]["lr"] == pytest.approx(lr_at(0, cfg)) and records[0]["kl_coeff"] < whole[-1]["kl_coeff"]


# --- bounds and sampling ------------------------------------------------------------------------------------------


def test_importance_weighted_bound_is_at_least_the_elbo():
    torch.manual_seed(0)
    model = NVAE(NVAE_TINY)
    _train_a_little(model)
    x = tiny_images(4, seed=1).float() / 255
    log_w = model.eval().log_weights(x, 16)  # (k, B)
    bound = torch.logsumexp(log_w, 0) - math.log(16)
    assert (bound >= log_w.mean(0) - 1e-4).all()  # the same samples: Jensen, per image
    result = hierarchical_bounds(model, x, k=16, k_chunk=8, batch_size=4)
    assert result["iw_nats"] >= result["elbo_nats"] - 1.0 and len(result["kl_per_group_nats"]) == 4
    torch.manual_seed(0)
    per_image = torch.tensor(
        [hierarchical_bounds(model, x[i : i + 1], k=16, k_chunk=8)["iw_nats"] for i in range(4)]
    )
    torch.manual_seed(0)
    again = hierarchical_bounds(model, x, k=16, k_chunk=8, batch_size=1)  # the same draws, one image per call
    assert again["bpd_iw_se"] == pytest.approx(bits_per_dim(per_image.std().item() / 2), rel=1e-6)


def _train_a_little(model: NVAE, steps: int = 3) -> None:
    """A few Adamax steps so the posterior differs from the prior (q = p at initialisation)."""
    optimizer = torch.optim.Adamax(model.parameters(), lr=1e-2)
    x = tiny_images(8).float() / 255
    for step in range(steps):
        optimizer.zero_grad()
        model.loss(x, step + 100)[0].backward()
        optimizer.step()


@pytest.mark.parametrize("free_mb, largest_call", [(20, 8), (None, 100)])
def test_the_bound_decodes_at_once_only_what_fits_in_free_memory(monkeypatch, free_mb, largest_call):
    """With 20 MB free, 1 MB per decoded image and batches of 4, half the free memory holds 2 copies per call, so
    calls decode at most 8 images (k_chunk=25 asked for 100); every image still gets its k = 25 samples. Where free
    memory is unknown (the CPU) k_chunk stands."""
    from lib.metrics import likelihood

    torch.manual_seed(0)
    model, decoded = NVAE(NVAE_TINY), []
    log_weights = model.log_weights
    monkeypatch.setattr(model, "log_weights", lambda xb, k: decoded.append(len(xb) * k) or log_weights(xb, k))
    monkeypatch.setattr(likelihood, "free_memory_bytes", lambda device: free_mb and free_mb * 2**20)
    monkeypatch.setattr(likelihood, "decoder_bytes_per_image", lambda model, xb: 2**20)
    out = hierarchical_bounds(model, tiny_images(8), k=25, k_chunk=25, batch_size=4)
    assert max(decoded) == largest_call and sum(decoded) == 8 * 25
    assert math.isfinite(out["iw_nats"]) and out["iw_nats"] >= out["elbo_nats"] - 50


def test_untrained_bits_per_dim_are_finite_and_near_eight():
    torch.manual_seed(0)
    result = hierarchical_bounds(NVAE(NVAE_TINY).eval(), tiny_images(4), k=4, k_chunk=4, batch_size=4)
    for key in ("bpd_elbo", "bpd_iw"):
        assert math.isfinite(result[key]) and 7.0 < result[key] < 9.0, result
    assert bits_per_dim(3072 * math.log(2)) == pytest.approx(1.0)  # NLL / (3072 ln 2), no extra term


def test_temperature_samples_and_bn_reestimation():
    torch.manual_seed(0)
    model = NVAE(NVAE_TINY)
    _train_a_little(model)
    encoder_bn = model.net.pre[-1].branch[0].running_var.clone()
    decoder_bn = model.net.post[0].branch[0].running_var.clone()
    reestimate_bn(model, t=0.7, n_batches=2, batch_size=16)
    assert not model.training and torch.equal(model.net.pre[-1].branch[0].running_var, encoder_bn)
    assert not torch.allclose(model.net.post[0].branch[0].running_var, decoder_bn)
    draws = {}
    for t in (1.0, 0.6, 0.6):
        torch.manual_seed(0)
        draws.setdefault(t, []).append(model.sample(6, t=t, mode="mean"))
    assert draws[1.0][0].shape == (6, 3, 32, 32)
    assert torch.equal(*draws[0.6])  # the seed fixes the prior noise
    assert not torch.allclose(draws[1.0][0], draws[0.6][0])  # the temperature reaches the prior's scale


def test_bf16_autocast_keeps_the_objective_in_fp32():
    model = NVAE(NVAE_TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, stats = model.loss(tiny_images(4).float() / 255, 0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and stats["kl"].dtype == torch.float32


def test_under_autocast_the_dmol_head_runs_in_fp32():
    """The decoder's last features come out of bf16 layers; the head that turns them into the mixture's
    parameters is fp32, so the likelihood sees unrounded locations, scales and coefficients."""
    torch.manual_seed(0)
    model = NVAE(NVAE_TINY).eval()
    features = []
    model.net.post.register_forward_hook(lambda module, args, out: features.append(out))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = model.net(tiny_images(2).float() / 255)
    assert features[0].dtype == torch.bfloat16 and out.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(out, model.net.out(features[0].float()))


def test_power_iteration_is_fp32_under_autocast():
    torch.manual_seed(0)
    weight, u = torch.randn(3, 6, 5), torch.nn.functional.normalize(torch.randn(3, 6), dim=1)
    sigma, u_new = power_iteration(weight, u, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sigma_amp, u_amp = power_iteration(weight.bfloat16(), u, 5)
    assert sigma_amp.dtype == u_amp.dtype == torch.float32
    assert torch.allclose(sigma_amp, power_iteration(weight.bfloat16().float(), u, 5)[0], rtol=1e-6)


def test_tiny_preset_is_registered():
    model_cfg, train_cfg = MODELS["nvae"].presets["tiny"]
    assert train_cfg.optimizer == "adamax"
    assert sum(p.numel() for p in MODELS["nvae"].build(model_cfg).parameters()) < 200_000


def test_the_spectral_sum_follows_the_weights_of_a_copy_and_of_loaded_weights():
    """The weights are looked up once, at construction: a deep copy (the loop's EMA) and load_state_dict (a resume)
    must still reach the module's own parameters. Doubling every weight doubles every singular value."""
    import copy

    torch.manual_seed(0)
    model = NVAE(
        NVAE_TINY
    ).eval()  # eval: the persistent vectors stay put, so both sums start from the same u
    before = model.spectral_sum()
    twin = copy.deepcopy(model)
    twin.load_state_dict({k: 2 * v if k.endswith("weight") else v for k, v in model.state_dict().items()})
    torch.testing.assert_close(twin.spectral_sum(), 2 * before, rtol=1e-5, atol=0)
    torch.testing.assert_close(model.spectral_sum(), before, rtol=0, atol=0)  # the original is untouched


def test_the_official_small_preset_has_the_official_size():
    """The official code's small configuration: 2 scales, 64 channels, 3 groups per scale, 16.7M parameters."""
    cfg, train_cfg = MODELS["nvae"].presets["official_small"]
    assert (cfg.n_scales, cfg.channels, cfg.groups_per_scale, cfg.enc_cells, cfg.dec_cells) == (
        2,
        64,
        3,
        8,
        8,
    )
    n_params = sum(p.numel() for p in MODELS["nvae"].build(cfg).parameters())
    assert abs(n_params / 16.7e6 - 1) < 0.1
    assert train_cfg == MODELS["nvae"].presets["reference"][1]  # the same schedule as the reference preset
    assert next(iter(MODELS["nvae"].presets)) == "reference"  # still the default
