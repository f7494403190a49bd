"""A stand-in for PyMySQL (see README), installed as MySQLdb as install_as_MySQLdb() does."""

import sys

sys.modules["MySQLdb"] = sys.modules[__name__]
