"""What every layer above relies on, and nothing of the models: paths (every output and cache folder, smoke mode,
the profile), devices (choosing, naming, seeding), accelerator (what the device can do: native bf16, the
`auto` precision, torch.compile failures to fall back from, free memory), files (atomic writes, JSON lines), checks (the config field
checks) and progress (text progress bars that stay readable in saved notebooks)."""
