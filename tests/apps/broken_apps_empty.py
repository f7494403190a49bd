"""A module with no application in it."""

VALUE = 1
