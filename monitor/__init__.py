"""monitor: watch news feeds for topics and email a daily digest that explains each hit."""

__version__ = "0.1.0"

DEFAULT_USER_AGENT = (
    f"monitor/{__version__} (+https://github.com/monitor-news/monitor; news watchlist digest)"
)
