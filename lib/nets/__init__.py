"""Networks only (nn.Modules with explicit arguments, no losses, no configs)."""
