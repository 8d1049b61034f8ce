"""Postwacht: an outbound mail policy filter for Postfix."""

__version__ = "0.1.0"
