"""Turn a pytest-benchmark JSON (`make perf`) into a Markdown table: `python -m benchmark.perf_summary FILE`."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def summarize(path: str | Path) -> str:
    data = json.loads(Path(path).read_text())
    machine = data.get("machine_info", {})
    lines = [f"# make perf ({data.get('datetime', '')[:19]}, {machine.get('cpu', {}).get('brand_raw', '?')}, "
             f"python {machine.get('python_version', '?')})", "",
             "| benchmark | median | min | max | rounds | measured besides time |", "|---|---|---|---|---|---|"]
    for bench in sorted(data.get("benchmarks", []), key=lambda b: b["fullname"]):
        st = bench["stats"]
        extra = ", ".join(f"{k} {_v(v)}" for k, v in sorted((bench.get("extra_info") or {}).items()))
        lines.append(f"| `{bench['fullname']}` | {_t(st['median'])} | {_t(st['min'])} | {_t(st['max'])} | "
                     f"{st['rounds']} | {extra} |")
    return "\n".join(lines) + "\n"


def _v(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _t(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    sys.stdout.write(summarize(sys.argv[1]))
