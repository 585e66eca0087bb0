"""unibench: a benchmarking harness for multimodal unified discrete representations."""
__version__ = "0.1.0"
