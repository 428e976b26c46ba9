"""NCSN: annealed DSM against the analytic Gaussian score, annealed Langevin on an exact mixture score, the final
Tweedie step, the two score nets, inpainting, config and sampler argument validation, NCSNv2's ladder techniques
and pixel-space neighbours (all on CPU)."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from lib.common import sampler_speed
from lib.losses import dsm_loss, per_level_means
from lib.metrics import nearest_neighbours
from lib.models import MODELS, NCSN, NCSNConfig, ncsnv2_config
from lib.models.ncsn import NCSN_TINY, NCSN_V2
from lib.nets.ncsn import RefineNet, ScoreUNet
from lib.samplers import (
    annealed_langevin,
    annealed_langevin_inpaint,
    geometric_sigmas,
    ladder_ratio,
    langevin_step,
    largest_pairwise_distance,
    technique2_gamma,
    technique2_n_sigmas,
    technique4_step_lr,
    technique4_variance_ratio,
)
from lib.train import train

TINY_REFINENET = replace(NCSN_TINY, net="refinenet", nf=8)


def test_dsm_prefers_the_analytic_score_and_matches_its_closed_form():
    """x ~ N(0, s^2 I_D): the perturbed score is -x / (s^2 + sigma^2) and its expected loss per level is
    1/2 sigma^2 E||s + z / sigma||^2 = D s^2 / (2 (s^2 + sigma^2)) for lambda = sigma^2."""
    g = torch.Generator().manual_seed(0)
    n, d, s = 200_000, 8, 0.5
    sigmas = geometric_sigmas(2.0, 0.05, 6).double()
    x = s * torch.randn(n, d, generator=g, dtype=torch.float64)
    level = torch.randint(0, len(sigmas), (n,), generator=g)
    noise = torch.randn(n, d, generator=g, dtype=torch.float64)
    exact = lambda xn, lvl: -xn / (s**2 + sigmas[lvl, None] ** 2)  # noqa: E731
    losses, _ = dsm_loss(exact, x, sigmas, level=level, noise=noise)
    closed = (0.5 * d * s**2 / (s**2 + sigmas[level] ** 2)).mean()
    assert abs(losses.mean() - closed) < 4 * losses.std() / math.sqrt(n)  # within 4 Monte Carlo std errors
    for wrong in (
        lambda xn, lvl: 1.1 * exact(xn, lvl),
        lambda xn, lvl: 0.9 * exact(xn, lvl),
        lambda xn, lvl: exact(xn, lvl) + 0.05,
        lambda xn, lvl: -xn / s**2,
    ):
        assert dsm_loss(wrong, x, sigmas, level=level, noise=noise)[0].mean() > losses.mean()


def test_per_level_means_are_unbiased_and_never_nan():
    level = torch.tensor([0, 0, 2, 2])
    means = per_level_means(torch.tensor([1.0, 3.0, 5.0, 7.0]), level, n_levels=4)
    assert torch.allclose(means, torch.tensor([4.0, 0.0, 12.0, 0.0]))  # sums / (B / L) with B / L = 1


MIX_W = torch.tensor([0.3, 0.7], dtype=torch.float64)
MIX_MU = torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
MIX_COV = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.05], [-0.05, 0.4]]], dtype=torch.float64)


def mixture_log_components(x, sigma):
    """log w_k + log N(x; mu_k, C_k + sigma^2 I) for x (N, 2): (N, 2), and the precisions (2, 2, 2)."""
    cov = MIX_COV + sigma**2 * torch.eye(2, dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(MIX_MU, covariance_matrix=cov)
    return MIX_W.log() + dist.log_prob(x[:, None, :]), torch.linalg.inv(cov)


def test_annealed_langevin_recovers_a_gaussian_mixture():
    """Tolerances (4,000 chains, about 4 sampling std errors): weights +-0.03, means +-0.06, covariance
    entries +-0.04."""
    torch.manual_seed(0)
    sigmas = geometric_sigmas(6.0, 0.05, 12).double()

    def score(x, level):  # exact grad log p_sigma of the mixture perturbed at sigma_level
        log_comp, precision = mixture_log_components(x, float(sigmas[level]))
        resp = log_comp.softmax(dim=1)  # (N, K)
        grads = -torch.einsum("kij,nkj->nki", precision, x[:, None, :] - MIX_MU)  # (N, K, 2)
        return (resp[..., None] * grads).sum(1)

    x0 = 12 * torch.rand(4000, 2, dtype=torch.float64) - 6
    x = annealed_langevin(score, x0, sigmas, n_steps_each=100, step_lr=1e-3, denoise=False)
    component = mixture_log_components(x, 0.0)[0].argmax(dim=1)
    for k in range(2):
        xk = x[component == k]
        assert abs(len(xk) / len(x) - MIX_W[k]) < 0.03
        assert (xk.mean(0) - MIX_MU[k]).abs().max() < 0.06
        assert (torch.cov(xk.T) - MIX_COV[k]).abs().max() < 0.04


def test_trajectory_holds_the_start_each_level_and_the_denoised_end():
    sigmas = geometric_sigmas(1.0, 0.1, 3)
    x, path = annealed_langevin(
        lambda x, lvl: -x, torch.zeros(2, 3), sigmas, n_steps_each=4, return_trajectory=True
    )
    assert len(path) == 1 + 3 + 1 and torch.equal(path[-1], x)


def test_the_final_denoising_step_is_tweedie_with_sigma_l_squared():
    """Data N(0, s^2 I): the exact score at sigma is -x / (s^2 + sigma^2), so denoise=True must return
    x_T + sigma_L^2 s(x_T, L) for the last Langevin iterate x_T of the same chain (same seed)."""
    s = 0.5
    sigmas = geometric_sigmas(2.0, 0.1, 4).double()
    score = lambda x, lvl: -x / (s**2 + sigmas[lvl] ** 2)  # noqa: E731
    x0 = torch.rand(64, 3, dtype=torch.float64)
    torch.manual_seed(0)
    x_last, path = annealed_langevin(
        score, x0, sigmas, n_steps_each=7, step_lr=1e-3, denoise=False, return_trajectory=True
    )
    torch.manual_seed(0)
    denoised = annealed_langevin(score, x0, sigmas, n_steps_each=7, step_lr=1e-3, denoise=True)
    sigma_l = float(sigmas[-1])
    assert torch.equal(path[-1], x_last)  # without denoising the trajectory ends at x_T
    assert torch.allclose(denoised, x_last + sigma_l**2 * score(x_last, len(sigmas) - 1), rtol=0, atol=1e-12)
    assert not torch.allclose(denoised, x_last + sigma_l * score(x_last, len(sigmas) - 1), atol=1e-3)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("n_steps_each", dict(n_steps_each=0)),
        ("n_steps_each", dict(n_steps_each=-3)),
        ("step_lr", dict(step_lr=0.0)),
        ("step_lr", dict(step_lr=-1e-5)),
    ],
)
def test_samplers_reject_a_chain_that_cannot_run_naming_the_parameter(name, kwargs):
    sigmas, score = geometric_sigmas(1.0, 0.1, 3), lambda x, lvl: -x  # noqa: E731
    x, mask = torch.rand(1, 3, 4, 4), torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match=name):
        annealed_langevin(score, x, sigmas, **kwargs)
    with pytest.raises(ValueError, match=name):
        annealed_langevin_inpaint(score, x, mask, sigmas, **kwargs)


@pytest.mark.parametrize(
    "message, args",
    [
        ("sigma_min must be < sigma_max", (1.0, 1.0, 5)),
        ("sigma_min must be < sigma_max", (0.5, 2.0, 5)),
        ("sigma_min must be > 0", (1.0, 0.0, 5)),
        ("sigma_min must be > 0", (1.0, -0.1, 5)),
        (r"^n \(the number of levels", (1.0, 0.1, 0)),
    ],
)
def test_geometric_sigmas_reject_a_ladder_that_does_not_descend(message, args):
    with pytest.raises(ValueError, match=message):
        geometric_sigmas(*args)  # (sigma_max, sigma_min, n)


def test_geometric_sigmas_descend_with_a_constant_ratio():
    sigmas = geometric_sigmas(50.0, 0.01, 20).double()
    ratios = sigmas[:-1] / sigmas[1:]
    assert sigmas[0] == pytest.approx(50.0) and sigmas[-1] == pytest.approx(0.01, rel=1e-6)
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-5) and bool((ratios > 1).all())


TINY_NETS = [ScoreUNet(nf=8, ch_mult=(1, 2), n_res_blocks=1, dropout=0.0), RefineNet(nf=8, n_classes=4)]


@pytest.mark.parametrize("net", TINY_NETS, ids=["unet", "refinenet"])
def test_nets_keep_the_shape_and_read_the_noise_level(net):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    cond = (
        (lambda i: torch.full((2,), [1.0, 0.1][i]))
        if net.conditioning == "sigma"
        else (lambda i: torch.full((2,), [0, 3][i]))
    )
    out_a, out_b = net(x, cond(0)), net(x, cond(1))
    assert out_a.shape == x.shape and torch.isfinite(out_a).all()
    assert not torch.allclose(out_a, out_b)


@pytest.mark.parametrize("cfg", [NCSN_TINY, TINY_REFINENET], ids=["unet", "refinenet"])
def test_a_few_training_steps_lower_the_loss_on_a_tiny_batch(cfg):
    torch.manual_seed(0)
    model = NCSN(cfg)
    x = torch.rand(8, 3, 1, 1) * torch.ones(8, 3, 32, 32)  # flat colours: an easy distribution

    def fixed_loss():
        torch.manual_seed(123)  # the same levels and noise every time
        with torch.no_grad():
            return model.loss(x, 0)[0].item()

    before = fixed_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(15):
        optimizer.zero_grad()
        model.loss(x, step)[0].backward()
        optimizer.step()
    assert fixed_loss() < 0.9 * before


def test_inpainting_keeps_the_known_pixels_exactly():
    torch.manual_seed(0)
    model = NCSN(NCSN_TINY).eval()
    x_known = torch.rand(2, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1  # the left half is known
    out = model.inpaint(x_known, mask, n_steps_each=2)
    known = mask.bool().expand_as(x_known)
    assert torch.equal(out[known], x_known[known]) and not torch.equal(out, x_known)
    huge = annealed_langevin_inpaint(
        lambda x, lvl: 1e300 * torch.ones_like(x), x_known.double(), mask, model.sigmas, n_steps_each=1
    )  # even a diverging chain leaves them alone
    assert torch.equal(huge[known], x_known.double()[known])


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("sigma_min", dict(sigma_min=1.0, sigma_max=1.0)),
        ("sigma_min", dict(sigma_min=2.0, sigma_max=1.0)),
        ("n_sigmas", dict(n_sigmas=0)),
        ("n_steps_each", dict(n_steps_each=0)),
        ("step_lr", dict(step_lr=0.0)),
        ("step_lr", dict(step_lr=-1e-5)),
        ("net", dict(net="resnet")),
        ("step_lr", dict(step_lr=float("nan"))),
        ("sigma_max", dict(sigma_max=float("inf"))),
        ("n_sigmas", dict(n_sigmas=2.5)),
        ("denoise", dict(denoise="yes")),
    ],
)
def test_bad_config_values_raise_naming_the_field(field, kwargs):
    with pytest.raises(ValueError, match=field):
        NCSNConfig(**kwargs)


def test_technique2_gamma_gives_half_overlap_and_more_levels_in_more_dimensions():
    gamma = technique2_gamma(3072)
    phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    c = math.sqrt(2 * 3072) * (gamma - 1)
    assert phi(c + 3 * gamma) - phi(c - 3 * gamma) == pytest.approx(0.5, abs=1e-6)
    assert 200 < technique2_n_sigmas(50.0, 0.01, 3072) < 250  # NCSNv2 reports L = 232 for CIFAR-10
    assert technique2_n_sigmas(50.0, 0.01, 12288) > technique2_n_sigmas(50.0, 0.01, 3072)


def test_technique4_step_lr_brings_the_variance_ratio_closest_to_one():
    gamma, sigma_min = 1.04, 0.01
    ratio = lambda lr, t: technique4_variance_ratio(lr, t, gamma, sigma_min)  # noqa: E731
    errors = []
    for t in (1, 5, 50):
        lr = technique4_step_lr(t, gamma, sigma_min)
        best = abs(ratio(lr, t) - 1)
        assert best <= abs(ratio(0.5 * lr, t) - 1) and best <= abs(ratio(2 * lr, t) - 1)
        errors.append(best)
    assert errors[0] > errors[1] > errors[2]  # more steps per level: closer to the target distribution
    assert ratio(1e-12, 5) == pytest.approx(gamma**2, rel=1e-6)  # no movement: the previous level's variance


def test_ncsnv2_config_chains_techniques_2_and_4_from_sigma_1():
    cfg = ncsnv2_config(50.0, 0.01, 5)
    assert cfg == NCSN_V2 and cfg.net == "refinenet" and cfg.scale_by_sigma and cfg.denoise
    gamma = ladder_ratio(cfg.sigma_max, cfg.sigma_min, cfg.n_sigmas)
    assert gamma <= technique2_gamma(3072) < ladder_ratio(50.0, 0.01, cfg.n_sigmas - 1)  # the fewest levels
    assert cfg.step_lr == technique4_step_lr(5, gamma, 0.01)
    wider = ncsnv2_config(80.0, 0.01, 5, base=NCSN_TINY)
    assert wider.n_sigmas > cfg.n_sigmas and wider.nf == NCSN_TINY.nf  # the base keeps its net


def test_pixel_neighbours_and_the_largest_distance_match_brute_force():
    g = torch.Generator().manual_seed(0)
    ref = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8, generator=g)
    queries = torch.rand(7, 3, 4, 4, generator=g)
    dist, index = nearest_neighbours(queries, ref, k=2, chunk=16)
    brute = torch.cdist(queries.flatten(1), ref.float().div(255).flatten(1))
    assert torch.equal(index, brute.topk(2, dim=1, largest=False).indices)
    assert torch.allclose(dist, brute.topk(2, dim=1, largest=False).values)
    assert nearest_neighbours(ref[:3], ref, chunk=16)[1][:, 0].tolist() == [0, 1, 2]
    flat = ref.float().div(255).flatten(1)
    assert largest_pairwise_distance(ref, chunk=16) == pytest.approx(
        torch.cdist(flat, flat).max().item(), rel=1e-5
    )


def test_tiny_preset_trains_through_the_loop_and_logs_per_level_losses(images):
    model_cfg, train_cfg = MODELS["ncsn"].presets["tiny"]
    train_cfg = replace(train_cfg, steps=4, log_every=2, n_samples=4)
    result = train(NCSN(model_cfg), images, train_cfg, "ncsn-tiny", device="cpu")
    records = [line for line in (result.folder / "metrics.jsonl").read_text().splitlines()]
    assert result.step == 4 and len(records) == 2 and '"dsm_sigma=1"' in records[-1]
    assert list((result.folder / "samples").glob("*.png"))


# --- sampling speed options: bf16 autocast, a compiled Langevin step, chunks --------------------------------


def tiny_ncsn(net="unet"):
    torch.manual_seed(0)
    return NCSN(replace(NCSN_TINY, net=net, nf=8, n_steps_each=1)).eval()


@pytest.mark.parametrize("net", ["unet", "refinenet"])
def test_bf16_autocast_scores_match_fp32_closely(net):
    model, x = tiny_ncsn(net), torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        fp32 = model.score(x, 2)
        bf16 = sampler_speed.autocast_score(model.score, "cpu", "bf16")(x, 2)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # really evaluated in bf16
    assert (bf16 - fp32).norm() / fp32.norm() < 0.03  # bf16 keeps ~3 significant digits per operation


@pytest.mark.parametrize("net", ["unet", "refinenet"])  # conditioned on sigma / on the level index
def test_int_and_tensor_levels_give_the_same_score(net):
    model, x = tiny_ncsn(net), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        by_int = model.score(x, 1)
        assert torch.equal(by_int, model.score(x, torch.full((2,), 1)))
        assert torch.equal(by_int, model.score(x, torch.tensor(1)))
        assert torch.equal(by_int, model.score(x, np.int64(1)))  # not an int: through torch.as_tensor


def test_plain_sampling_is_the_old_chain_and_chunks_do_not_change_it(monkeypatch):
    """precision="fp32", compile=False is Alg. 1 as annealed_langevin runs it; so is the default ("auto") on a
    device without native bf16."""
    model, plain = tiny_ncsn(), dict(precision="fp32", compile=False)
    torch.manual_seed(1)
    x0 = torch.rand(4, 3, 32, 32)
    torch.manual_seed(2)
    old = annealed_langevin(model.score, x0, model.sigmas, n_steps_each=1, step_lr=NCSN_TINY.step_lr).clamp(
        0, 1
    )
    torch.manual_seed(2)
    assert torch.equal(model.sample(4, x=x0, **plain), old)
    torch.manual_seed(2)
    assert torch.equal(model.sample(4, x=x0, batch_size=4, **plain), old)
    monkeypatch.setattr(sampler_speed, "native_bf16", lambda device: False)
    torch.manual_seed(2)
    assert torch.equal(model.sample(4, x=x0), old)
    torch.manual_seed(2)
    chunked, path = model.sample(4, x=x0, batch_size=3, return_trajectory=True, **plain)
    assert chunked.shape == old.shape and len(path) == 1 + NCSN_TINY.n_sigmas + 1 and path[0].shape[0] == 4


def test_compiled_langevin_step_follows_the_eager_chain_with_one_graph(monkeypatch):
    """The 'eager' dynamo backend keeps the test fast; tensors for level and alpha mean no recompile per level,
    and a second call reuses the graph."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    step = torch.compile(langevin_step, backend="eager")
    monkeypatch.setattr(sampler_speed, "_compiled", lambda langevin: step)
    model, x0 = tiny_ncsn(), torch.rand(2, 3, 32, 32)
    torch.manual_seed(3)
    eager = model.sample(2, x=x0, precision="fp32", compile=False)
    for _ in range(2):
        torch.manual_seed(3)
        compiled = model.sample(2, x=x0, compile=True, precision="fp32")
        assert torch.allclose(compiled, eager, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1
    torch.manual_seed(3)
    fast = model.sample(2, x=x0, compile=True, precision="bf16")
    assert fast.shape == eager.shape and 0 <= fast.min() and fast.max() <= 1
    with pytest.raises(ValueError, match="precision"):
        model.sample(2, precision="fp16")


def test_a_langevin_step_that_fails_to_compile_runs_the_eager_chain(no_cxx_compiler, monkeypatch):
    """Without a C++ compiler the compiled step raises at its first call: the chain goes on eagerly (one
    warning) and gives the eager chain's samples."""
    monkeypatch.setattr(sampler_speed, "_COMPILE_FAILURE", [None])
    model, x0 = tiny_ncsn(), torch.rand(2, 3, 32, 32)
    torch.manual_seed(3)
    eager = model.sample(2, x=x0, compile=False)
    torch.manual_seed(3)
    with pytest.warns(UserWarning, match="torch.compile failed for the Langevin step") as caught:
        compiled = model.sample(2, x=x0, compile=True)
    assert torch.equal(compiled, eager) and len(caught) == 1
    assert "InvalidCxxCompiler" in sampler_speed._COMPILE_FAILURE[0]
    torch.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning a process: a later compiled chain is eager and silent
        assert torch.equal(model.sample(2, x=x0, compile=True), eager)


@pytest.mark.parametrize(
    "device, native, expected",
    [("cuda", True, ("bf16", True)), ("cuda", False, ("fp32", True)), ("cpu", True, ("bf16", False)),
     ("cpu", False, ("fp32", False))],
)  # fmt: skip
def test_the_auto_sampler_is_bf16_where_native_and_compiled_on_cuda(monkeypatch, device, native, expected):
    monkeypatch.setattr(sampler_speed, "native_bf16", lambda d: native)
    assert sampler_speed.sampler_speed(device) == expected
    assert sampler_speed.sampler_speed(device, "fp32", False) == ("fp32", False)  # explicit choices stay
    with pytest.raises(ValueError, match="compile must be True, False or 'auto'"):
        sampler_speed.sampler_speed(device, compile="yes")


@pytest.mark.parametrize("native", [True, False])
def test_the_sampler_score_is_the_net_as_the_sampler_evaluates_it(monkeypatch, native):
    """What 02's sampling estimate times: bf16 autocast where the sampler uses it, the plain score elsewhere."""
    monkeypatch.setattr(sampler_speed, "native_bf16", lambda device: native)
    model, x = tiny_ncsn().eval(), torch.rand(4, 3, 32, 32)
    level = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        timed, plain = model.sampler_score("cpu")(x, level), model.score(x, level)
        bf16 = sampler_speed.autocast_score(model.score, "cpu", "bf16")(x, level)
    assert timed.dtype == torch.float32
    assert torch.equal(timed, bf16 if native else plain) and not torch.equal(bf16, plain)


def test_the_bf16_sampler_matches_the_fp32_chain(monkeypatch):
    """The fast sampler (bf16 score, fp32 chain) against the plain one. Paired (the same start and injected noise),
    a sample moves by well under 1% of the samples' spread; independent chains have the same per-channel means
    and spreads within sampling error (4 standard errors of the per-image means)."""
    monkeypatch.setattr(sampler_speed, "native_bf16", lambda device: True)  # the default: bf16 here too
    model, n = tiny_ncsn(), 64
    torch.manual_seed(0)
    x0 = torch.rand(n, 3, 32, 32)
    torch.manual_seed(1)
    plain = model.sample(n, x=x0, precision="fp32", compile=False)
    torch.manual_seed(1)
    fast = model.sample(n, x=x0)  # auto: bf16, eager on the CPU
    assert not torch.equal(fast, plain)  # it is another computation...
    assert (fast - plain).pow(2).mean().sqrt() < 0.01 * plain.std()  # ...with the same samples to 1%
    torch.manual_seed(2)
    other = model.sample(n, precision="fp32", compile=False)
    torch.manual_seed(3)
    fast = model.sample(n)
    a, b = other.mean((2, 3)), fast.mean((2, 3))  # per-image channel means (n, 3)
    stderr = (a.var(0) / n + b.var(0) / n).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() < 4 * stderr).all()
    assert torch.allclose(other.std((0, 2, 3)), fast.std((0, 2, 3)), rtol=0.05)
