"""A research workbook for deep generative models on CIFAR-10. `lib` holds what the notebooks share; each
concern has one home, and lower layers never import higher ones (tests/test_layout.py checks both).

    runs          run folders, smoke mode, devices, seeding, atomic writes, the JSON-lines logger (+ wandb)
    data_sources  finding and decoding CIFAR-10 (pickled batches or image folders), its uint8 cache
    degrade       real images degraded on purpose (noise, blur, JPEG) to calibrate distances
    config_checks the type and finiteness checks every config's __post_init__ runs first
    data          load_cifar10, splits, the device-resident batch iterator, the one uint8 <-> float converter
                  (to_float, to_uint8) and the pixel constants N_LEVELS, N_DIMS
    nets/         nn.Modules only: score nets, VAE encoder/decoder, NVAE cells, the fd_c10 classifier
    dists         diagonal Gaussian, discretized logistic / Gaussian, DMOL
    losses        pure functions: DSM, beta-ELBO, capacity, IWAE, DReG, NVAE's KL terms, bits/dim
    samplers      annealed Langevin dynamics, inpainting, NCSNv2's ladder rules
    checkpoints   atomic checkpoints and RNG state
    run_folder    one process per run folder (a lock), fresh starts moved aside, config checks on resume
    interrupts    SIGTERM / Ctrl-C: checkpoint the current step, then stop
    skipping      non-finite updates skipped on the device (fused found_inf, or a flat snapshot put back)
    log_window    the loop's log window (device-side sums) and what a checkpoint keeps of it
    ema           the EMA of the weights that sampling and evaluation use
    speed         the loop's speed switches: fused optimizer, channels-last, compile, cuDNN autotuning, TF32
    train         TrainConfig and the one training loop (`python -m lib.train` runs lib.cli)
    models/       one module per family (config, presets, model): pixels, ncsn, vae (Beta-VAE, IWAE), nvae;
                  the registry MODELS, build, load_run_model, train_or_load
    metrics/      likelihood bounds, active units, pixel neighbours, Fréchet distances (fd_c10, FID), the
                  fd_c10 classifier (`python -m lib.metrics train-classifier`)
    budget        minutes become steps (a probe of the real loop), cost estimates, where the time went
    results       the run -> results contract: records, sample banks, reading them back, the family table
    findings      plain-text tables and verdicts computed from numbers
    viz, viz_vae  figures (returned, never shown; stamped in smoke mode)
    viz_compare   the model comparison's figures: fd_c10 calibration, sample panels, per-model views
    progress      progress bars that stay readable in saved notebooks (a final count-and-time line)
    cli           the command line of `python -m lib.train`
    bench/        throughput of the real loop step and samplers, plain vs fast: flops, timing, suites
                  (`python -m lib.bench all --out DIR`; `--tiny` rehearses it on the CPU)
    workbook      the headless notebook runner (`python -m lib.workbook`, `make workbook`)
"""
