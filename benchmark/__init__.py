"""unibench: a benchmarking harness for multimodal unified discrete representations.

`benchmark.evaluate(...)`, `benchmark.load_results(...)` (see `benchmark.api`) and `benchmark.mlflow_runs(...)`
(`benchmark.tracking`) are imported on first use, so
`import benchmark` (and every CLI start) stays cheap."""
__version__ = "0.1.0"

_LAZY = {"evaluate": "benchmark.api", "load_results": "benchmark.api", "UserError": "benchmark.contracts",
         "mlflow_runs": "benchmark.tracking"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")
