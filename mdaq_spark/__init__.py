"""mdaq-spark: M-DaQ selection of high-quality, diverse multilingual instruction data on Spark."""

__version__ = "0.1.0"
