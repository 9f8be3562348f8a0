"""maintainer: scheduled PostgreSQL maintenance for the Parlant agent tables."""

__version__ = "0.1.0"
