"""A stand-in for pylibmc (see README): loaded under its name."""
