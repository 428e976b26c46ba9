"""Beta-VAE and IWAE: distributions, bounds, estimators and the models' behaviour (CPU, < 60 s)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from lib import losses, metrics
from lib.dists import DISCRETE_LIKELIHOODS, DiagonalGaussian, standard_normal_log_prob
from lib.metrics import elbo_terms
from lib.models import (
    IWAE,
    MODELS,
    VAE,
    BetaVAE,
    BetaVAEConfig,
    IWAEConfig,
    beta_vae_terms,
    check_beta_sweep,
    objective_name,
)
from lib.train import train
from lib.workbook import results
from lib.workbook.findings import paired_gap

TINY = dict(latent_dim=4, widths=(4, 8))
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


class LinearGaussian(nn.Module):
    """p(z) = N(0, I), p(x|z) = N(W z + b, sigma^2 I): log p(x) = log N(x; b, W W^T + sigma^2 I) in closed form.

    q(z|x) = N(A x + c, diag(exp(logvar))) is a learnable, deliberately imperfect (diagonal, too wide) posterior.
    """

    def __init__(self, n_x: int = 4, n_z: int = 2, sigma: float = 0.5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(n_x, n_z, generator=g))  # the "decoder" parameter
        self.b, self.sigma = torch.randn(n_x, generator=g), sigma
        # q: the exact posterior's mean, its marginal variances inflated by e^0.5 and no correlations
        cov = torch.linalg.inv(torch.eye(n_z) + (self.W.T @ self.W).detach() / sigma**2)
        A = cov @ self.W.T.detach() / sigma**2
        self.A, self.c = nn.Parameter(A.detach().clone()), nn.Parameter(-(A @ self.b).detach())
        self.logvar = nn.Parameter(cov.diagonal().log().detach() + 0.5)

    def posterior(self, x):
        return DiagonalGaussian(x @ self.A.T + self.c, self.logvar.expand(x.shape[0], -1))

    def log_px_z(self, x, z):
        return DiagonalGaussian(z @ self.W.T + self.b, torch.tensor(2 * math.log(self.sigma))).log_prob(x)

    log_weights = VAE.log_weights

    def true_log_px(self, x):
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(len(self.b))
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return LinearGaussian()


# --- distributions ---------------------------------------------------------------------------------------------


def test_gaussian_kl_matches_monte_carlo():
    torch.manual_seed(0)
    q = DiagonalGaussian(torch.randn(3), torch.randn(3))
    z = q.rsample(400_000)
    mc = (q.log_prob(z) - standard_normal_log_prob(z)).mean()
    assert float(mc) == pytest.approx(float(q.kl_standard_normal()), abs=0.02)


def test_gaussian_log_prob_matches_torch():
    mu, logvar, z = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(DiagonalGaussian(mu, logvar).log_prob(z), expected)


@pytest.mark.parametrize("name", sorted(DISCRETE_LIKELIHOODS))
@pytest.mark.parametrize("mean,log_scale", [(0.3, -2.0), (0.5, -6.9), (0.0, -4.0), (1.0, -3.0), (0.7, 2.0)])
def test_discrete_likelihood_sums_to_one(name, mean, log_scale):
    levels = torch.arange(256.0) / 255
    log_p = DISCRETE_LIKELIHOODS[name](levels, torch.tensor(mean), torch.tensor(log_scale))
    assert torch.isfinite(log_p).all() and (log_p <= 1e-6).all()
    assert float(log_p.exp().sum()) == pytest.approx(1.0, abs=1e-4)


# --- bounds and estimators ---------------------------------------------------------------------------------


def losses_on_the_same_noise(models, x, step: int, seed: int = 1) -> list[torch.Tensor]:
    """Each model's loss on x with the same posterior noise (the RNG reseeded before each)."""
    out = []
    for model in models:
        torch.manual_seed(seed)
        out.append(model.loss(x, step)[0])
    return out


def test_iwae_bound_at_k1_is_the_elbo_on_the_same_samples(linear):
    x = torch.randn(8, 4)
    log_w, _ = linear.log_weights(x, 1)
    torch.testing.assert_close(losses.iwae_bound(log_w), log_w[0])
    vae, iwae = IWAE(IWAEConfig(**TINY, k=1, objective="vae")), IWAE(IWAEConfig(**TINY, k=1))
    iwae.load_state_dict(vae.state_dict())
    torch.testing.assert_close(*losses_on_the_same_noise([vae, iwae], torch.rand(4, 3, 32, 32), step=0))


@pytest.mark.parametrize("k", [2, 5, 50])
def test_iwae_bound_of_equal_weights_is_their_log_weight_at_every_k(k):
    # w_i all equal: (1/k) sum_i w_i = w, so L_k = log w; a missing or doubled log k is off by log k
    torch.testing.assert_close(losses.iwae_bound(torch.zeros(k, 3)), torch.zeros(3))
    torch.testing.assert_close(losses.iwae_bound(torch.full((k, 3), -2.5)), torch.full((3,), -2.5))


def test_iwae_bound_by_hand():
    w = torch.tensor([[1.0, 2.0], [3.0, 6.0], [8.0, 1.0]])  # importance weights, (k=3, B=2)
    expected = torch.tensor([math.log(12 / 3), math.log(9 / 3)])  # log of each column's mean weight
    torch.testing.assert_close(losses.iwae_bound(w.log()), expected)
    torch.testing.assert_close(losses.iwae_bound(w.log() + 1000.0), expected + 1000.0)  # no overflow in exp


def test_iwae_bound_does_not_decrease_with_k(linear):
    torch.manual_seed(0)
    x = linear.b + torch.randn(64, 4)
    with torch.no_grad():
        means = [
            float(metrics.importance_log_likelihood(linear, x.repeat(50, 1), k=k).mean())
            for k in (1, 2, 5, 20)
        ]
    assert all(a < b for a, b in zip(means, means[1:])), means


def test_k5000_estimate_is_tight_and_elbo_stays_below(linear):
    torch.manual_seed(0)
    x = linear.b + torch.randn(16, 4)
    with torch.no_grad():
        truth = linear.true_log_px(x)
        estimate = metrics.importance_log_likelihood(linear, x, k=5000, k_chunk=700)
        elbo = linear.log_weights(x, 1000)[0].mean(0)
    assert (estimate - truth).abs().max() < 0.05
    assert float((estimate - truth).mean().abs()) < 0.01
    assert (elbo < truth - 0.05).all()


def _encoder_grads(model, x, k, dreg):
    model.zero_grad()
    log_w, z = model.log_weights(x, k, stop_q=dreg)
    (losses.dreg_loss(log_w, z) if dreg else losses.iwae_loss(log_w)).backward()
    return torch.cat([p.grad.flatten() for p in (model.A, model.c, model.logvar)]), model.W.grad.clone()


def test_dreg_and_iwae_gradients_agree_in_expectation(linear):
    with torch.no_grad():  # move q off its optimum so the expected encoder gradient is clearly non-zero
        linear.A.add_(0.3 * torch.randn(linear.A.shape, generator=torch.Generator().manual_seed(1)))
        linear.c.add_(0.5)
    x = (linear.b + torch.randn(2, 4, generator=torch.Generator().manual_seed(3))).repeat(100_000, 1)
    torch.manual_seed(0)
    enc_iwae, dec_iwae = _encoder_grads(linear, x, 5, dreg=False)
    torch.manual_seed(0)
    enc_dreg, dec_dreg = _encoder_grads(linear, x, 5, dreg=True)
    assert float((enc_dreg - enc_iwae).norm() / enc_iwae.norm()) < 0.1
    torch.testing.assert_close(dec_dreg, dec_iwae)  # same samples: the decoder gradient is IWAE's in both


# --- metrics ------------------------------------------------------------------------------------------------


def test_active_units_marks_a_planted_collapsed_dimension():
    torch.manual_seed(0)
    mu = torch.randn(500, 6)
    mu[:, 2] = 0.3 + 0.01 * torch.randn(500)  # variance 1e-4 < 0.01: the posterior mean ignores x
    active = metrics.active_units(mu)
    assert active.tolist() == [True, True, False, True, True, True]


def test_vae_metrics_on_a_tiny_model(images):
    torch.manual_seed(0)
    model = BetaVAE(BetaVAEConfig(**TINY)).eval()
    result = metrics.evaluate_likelihood(model, images[:8], k=32, batch_size=4, k_chunk=10)
    assert result["bpd"] == pytest.approx(-result["log_px_nats"] / (3072 * math.log(2)))
    assert 0 < result["bpd"] <= result["bpd_elbo"]
    assert metrics.posterior_means(model, images).shape == (len(images), 4)
    assert 0 < metrics.reconstruction_error(model, images) < 1


# --- configs and models -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,field",
    [
        (lambda: BetaVAEConfig(beta=-0.5), "beta"),
        (lambda: BetaVAEConfig(latent_dim=0), "latent_dim"),
        (lambda: IWAEConfig(k=0), r"\.k "),
        (lambda: IWAEConfig(latent_dim=0), "latent_dim"),
        (lambda: IWAEConfig(likelihood="normal"), "likelihood"),
        (lambda: BetaVAEConfig(beta=float("nan")), "beta"),
        (lambda: IWAEConfig(k=5.0), r"\.k must be int"),
        (lambda: losses.beta_elbo(torch.zeros(1), torch.zeros(1), -1.0), "beta"),
    ],
)
def test_bad_input_raises_value_error_naming_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_beta_elbo_terms_and_capacity():
    log_px_z, kl = torch.tensor([-100.0]), torch.tensor([10.0])
    terms = losses.beta_elbo(log_px_z, kl, beta=4.0)
    assert float(terms["elbo"]) == -110.0 and float(terms["beta_elbo"]) == -140.0
    assert float(terms["reconstruction"]) == 100.0
    assert losses.capacity_at(50, 20.0, 100) == 10.0 and losses.capacity_at(500, 20.0, 100) == 20.0
    capacity = losses.capacity_elbo(log_px_z, kl, 2.0, 15.0)
    assert float(capacity["capacity_elbo"]) == -110.0 and "beta_elbo" not in capacity  # |10 - 15| * 2 = 10


@pytest.mark.parametrize(
    "name,cfg",
    [
        ("beta_vae", BetaVAEConfig(**TINY, beta=2.0, likelihood="gaussian")),
        ("iwae", IWAEConfig(**TINY, k=3, dreg=True)),
    ],
)
def test_tiny_models_train_and_sample(name, cfg, images, tmp_path):
    _, train_cfg = MODELS[name].presets["tiny"]
    model = MODELS[name].build(cfg)
    result = train(model, images, train_cfg, tmp_path / name, device="cpu", use_wandb=False)
    assert result.step == train_cfg.steps and result.n_skipped == 0
    torch.manual_seed(0)
    samples = result.ema.sample(4)
    torch.manual_seed(0)
    prior = torch.randn(4, cfg.latent_dim)
    torch.testing.assert_close(samples, result.ema.decode(prior))  # samples show the decoder at z ~ N(0, I)
    _, stats = result.model.loss(torch.rand(4, 3, 32, 32), 0)
    assert all(torch.isfinite(v) for v in stats.values())


# --- the sweep's objective naming and verdicts (lib.models.vae, lib.findings) -----------------------------------------------------


def test_capacity_objective_ignores_beta_so_a_beta_sweep_under_it_is_refused():
    cfg = BetaVAEConfig(**TINY, capacity_max=20.0, capacity_steps=100)
    a, b = BetaVAE(cfg).eval(), BetaVAE(replace(cfg, beta=4.0)).eval()
    b.load_state_dict(a.state_dict())
    loss_a, loss_b = losses_on_the_same_noise([a, b], torch.rand(4, 3, 32, 32), step=50)
    torch.testing.assert_close(loss_a, loss_b)  # the premise of the refusal: beta changes nothing here
    with pytest.raises(ValueError, match=r"BETAS=\[1\.0, 4\.0\] with CAPACITY_MAX=20.*CAPACITY_MAX = 0"):
        check_beta_sweep([1.0, 4.0], capacity_max=20.0)
    check_beta_sweep([4.0], capacity_max=20.0)
    check_beta_sweep([0.5, 4.0], capacity_max=0.0)


@pytest.mark.parametrize(
    "cfg,name",
    [
        (BetaVAEConfig(**TINY, beta=4.0), "beta_elbo"),
        (BetaVAEConfig(**TINY, beta=4.0, capacity_max=20.0, capacity_steps=100, gamma=2.0), "capacity_elbo"),
    ],
)
def test_reported_objective_is_the_one_the_model_trains_under_its_own_name(cfg, name, images):
    torch.manual_seed(0)
    model = BetaVAE(cfg).eval()
    x = images[:8].float() / 255
    torch.manual_seed(1)
    _, stats = model.loss(x, 50)
    torch.manual_seed(1)
    with torch.no_grad():
        q = model.posterior(x)
        terms = beta_vae_terms(cfg, model.log_px_z(x, q.rsample()), q.kl_standard_normal(), 50)
    assert objective_name(cfg) == name and set(terms) == {"reconstruction", "kl", "elbo", name}
    assert float(terms[name].mean()) == pytest.approx(float(stats[name]), rel=1e-5)
    reported = elbo_terms(model, images, model_cfg=cfg, step=50)
    assert set(reported) == {"reconstruction", "kl", "elbo", name}


def test_paired_gap_is_the_mean_difference_with_the_standard_error_of_the_differences():
    """03 and 04 rank bounds measured on the same test images: the images' shared difficulty cancels."""
    base = [7.0, 7.4, 6.8, 7.2]  # per-image difficulty, far larger than the gap
    before, after = [b + 0.05 for b in base], [b + d for b, d in zip(base, [0.0, 0.01, 0.0, 0.01])]
    gap, se = paired_gap(before, after)
    diffs = [0.05, 0.04, 0.05, 0.04]
    assert gap == pytest.approx(0.045) and se == pytest.approx(torch.tensor(diffs).std().item() / 2)
    assert gap > 2 * se  # a gain on every image, spread 0.01: decided although each mean has SE ~0.13
    with pytest.raises(ValueError, match="two equal lists"):
        paired_gap([1.0, 2.0], [1.0])


@pytest.mark.parametrize(
    "name",
    ["00_data_exploration", "01_literature_review", "02_ncsn", "03_beta_vae_sweep", "04_iwae_k_comparison",
     "05_nvae_stages", "06_model_comparison"],
)  # fmt: skip
@pytest.mark.parametrize("profile", ["short", "full"])
def test_notebook_setup_cells_run_on_the_real_path(name, profile, capsys):
    """Imports, parameters and the settings cell of every notebook under a real profile, which the smoke run
    cannot show: names only the real path reads must be imported, and every size comes from the profile (banks of
    results.N_BANK in full); SMOKE (None) follows the profile."""
    cells = [
        c for c in json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"] if c["cell_type"] == "code"
    ]
    start = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    imports, parameters, derived = ("".join(c["source"]) for c in cells[start - 1 : start + 2])
    namespace = {}
    exec(imports, namespace)
    exec(parameters, namespace)
    namespace["PROFILE"] = profile  # as the runner passes it (papermill's injected cell)
    exec(derived, namespace)
    S = namespace["S"]
    assert S.profile == profile and S.smoke is False and namespace["SMOKE"] is None
    if hasattr(S, "n_bank"):
        assert S.n_bank == (results.N_BANK if profile == "full" else 1_000)
    assert f"profile {profile} (PROFILE = '{profile}')" in capsys.readouterr().out
    if "CAPACITY_MAX" in namespace:  # notebook 03 refuses a beta sweep under the capacity objective up front
        namespace.update(CAPACITY_MAX=20.0, BETAS=[1.0, 4.0])
        with pytest.raises(ValueError, match="CAPACITY_MAX"):
            exec(derived, namespace)
