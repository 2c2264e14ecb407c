"""kumo (雲): schedule, run and meter a national AI compute programme."""

__version__ = "0.1.0"
