"""A stand-in for MySQLdb (see README): loaded under its name."""
