"""monitor: watch news feeds for topics and email a daily digest that explains each hit."""

__version__ = "0.1.0"
