"""A stand-in for pymssql (see README): loaded under its name."""
