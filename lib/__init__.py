"""A research workbook for deep generative models on CIFAR-10. The folders are the layers, lowest first; a
module imports its own package and lower layers, never a higher one, and there is no import cycle
(tests/test_layout.py checks both).

    common/    paths (every output and cache folder, smoke mode, the profile), devices, atomic files, config
               field checks, text progress bars, the sampler's speed switches (`sampler_speed`: bf16, compile)
    data/      CIFAR-10: finding and decoding it (torchvision's batches or image folders, `sources`), its uint8
               cache, splits, device-resident batches, the one uint8 <-> float converter; `degrade` for
               calibration
    nets/      nn.Modules only: score nets, VAE encoder/decoder, NVAE cells, the fd_c10 classifier; fast_layers:
               the same layers computed faster on the CPU (speed only)
    dists      diagonal Gaussian, discretized logistic / Gaussian, DMOL
    losses     pure functions: DSM, beta-ELBO, capacity, IWAE, DReG, NVAE's KL terms, bits/dim
    samplers   annealed Langevin dynamics, inpainting, NCSNv2's ladder rules
    train/     the one loop and its guards: config (TrainConfig), loop, checkpoints, run folder, interrupts,
               skipping, log window, EMA, speed, logger; `python -m lib.train` is its CLI
    models/    one module per family (config, presets, model): pixels, ncsn, vae (Beta-VAE, IWAE), nvae; the
               registry MODELS and build (a family imports lib.train.config, never the loop)
    metrics/   likelihood bounds, active units, pixel neighbours, Fréchet distances (fd_c10, FID/KID), the fd_c10
               classifier (`python -m lib.metrics train-classifier`), the FID calibration
    viz/       figure primitives several notebooks use: core, curves, vae (returned, never shown; stamped in
               smoke mode); a notebook's own figures are drawn in its cells
    workbook/  what two or more notebooks use around the models: profiles (sizes per profile, as data), budget
               (fit: within minutes or steps), training, results, findings, and the runner
               (`python -m lib.workbook`, `make workbook`)
    bench/     throughput of the real loop step and samplers, plain vs fast: flops, timing, suites
               (`python -m lib.bench all --out DIR`; `--tiny` rehearses it on the CPU), and the doctor's checks
    doctor     `python -m lib.doctor`: a new machine checked in minutes (every family's fast path, lib.bench.doctor)
"""
