"""memscope: memory profiling and copy-on-write forensics for forked Python process trees."""

__version__ = "0.1.0"

__all__ = ["__version__"]
